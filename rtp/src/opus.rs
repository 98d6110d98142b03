//! Opus (RFC 7587). Every Opus packet decodes on its own, so there is no keyframe or payload
//! descriptor to look at; this module exists so every codec has a home.
