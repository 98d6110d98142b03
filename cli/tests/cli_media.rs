//! `livekit-cli room join`, `join` and `perf load-test` against our own `livekit-server`
//! on 127.0.0.1: files the test writes are published by one CLI process and recorded by
//! another, and the recordings are read back and checked.

use std::io::{BufReader, Read as _};
use std::net::{TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use lkr_cli::media::ivf::{IvfReader, IvfWriter};
use lkr_cli::media::ogg::{OggOpusReader, OggOpusWriter};
use lkr_media_file::Codec;

const CREDENTIAL_VARS: [&str; 6] = [
    "LIVEKIT_URL",
    "LIVEKIT_API_KEY",
    "LIVEKIT_API_SECRET",
    "LK_API_KEY",
    "LK_API_SECRET",
    "RUST_LOG",
];

/// A `livekit-server` on free loopback ports, killed on drop.
struct Server {
    child: Child,
    port: u16,
    log: PathBuf,
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Server {
    fn start(dir: &Path) -> Self {
        let port = free_tcp_port();
        let udp = free_udp_port();
        let log = dir.join("server.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_livekit-server"))
            .args(["--keys", "devkey: secret", "--bind", "127.0.0.1"])
            .args(["--port", &port.to_string(), "--udp-port", &udp.to_string()])
            .env_remove("LIVEKIT_KEYS")
            .env_remove("LIVEKIT_CONFIG")
            .env("RUST_LOG", "info")
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("livekit-server starts");
        let s = Self { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(mut c) = TcpStream::connect(("127.0.0.1", port)) {
                use std::io::Write as _;
                let _ = c.write_all(b"GET / HTTP/1.0\r\n\r\n");
                let mut body = String::new();
                let _ = c.read_to_string(&mut body);
                if body.contains("200") && body.ends_with("OK") {
                    return s;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("server not ready:\n{}", s.log_text());
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cli_command(server: &Server, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_livekit-cli"));
    for var in CREDENTIAL_VARS {
        cmd.env_remove(var);
    }
    cmd.args(["--url", &server.url(), "--dev"]).args(args);
    cmd
}

fn run_cli(server: &Server, args: &[&str]) -> Output {
    cli_command(server, args)
        .output()
        .expect("livekit-cli runs")
}

fn spawn_cli(server: &Server, args: &[&str]) -> Child {
    cli_command(server, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("livekit-cli runs")
}

fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "lkr-cli-media-{name}-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// An Ogg file of `packets` 20 ms Opus packets (TOC config 31: CELT full band, 20 ms). The
/// payload bytes are filler: the server forwards them without decoding.
fn write_ogg(path: &Path, packets: u64) {
    let file = std::fs::File::create(path).unwrap();
    let mut w = OggOpusWriter::new(std::io::BufWriter::new(file), 2).unwrap();
    for i in 0..packets {
        let mut p = vec![31 << 3];
        p.extend((0..60).map(|j| (i as u8).wrapping_add(j)));
        w.write_packet(&p, (i + 1) * 960).unwrap();
    }
    w.finish().unwrap();
}

/// An IVF file of `frames` VP8-shaped frames at `fps`, a keyframe every `gop` frames; each
/// frame is `size` bytes long, so large frames span several RTP packets.
fn write_ivf(path: &Path, frames: u64, fps: u32, gop: u64, size: usize) {
    let file = std::fs::File::create(path).unwrap();
    let mut w = IvfWriter::new(std::io::BufWriter::new(file), Codec::Vp8, 320, 240, fps).unwrap();
    for i in 0..frames {
        let key = i % gop == 0;
        let mut f = if key {
            // Frame tag (keyframe, shown), start code, 320x240.
            vec![0x10, 0x00, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00]
        } else {
            vec![0x11, 0x00, 0x00]
        };
        f.resize(size, (i % 251) as u8);
        w.write_frame(&f, i).unwrap();
    }
    w.finish(None).unwrap();
}

fn recorded(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v
}

fn ogg_packets(path: &Path) -> Vec<(u64, Vec<u8>)> {
    let mut r = OggOpusReader::new(BufReader::new(std::fs::File::open(path).unwrap())).unwrap();
    std::iter::from_fn(|| r.next_packet().unwrap())
        .map(|p| (p.position, p.data))
        .collect()
}

fn ivf_frames(path: &Path) -> (lkr_cli::media::ivf::IvfHeader, Vec<(u64, Vec<u8>)>) {
    let mut r = IvfReader::new(BufReader::new(std::fs::File::open(path).unwrap())).unwrap();
    let h = r.header();
    let frames = std::iter::from_fn(|| r.next_frame().unwrap())
        .map(|f| (f.pts, f.data))
        .collect();
    (h, frames)
}

fn wait_with_deadline(mut child: Child, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("livekit-cli did not finish in {limit:?}\n{}", text(&out));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One participant publishes an Ogg and an IVF file and a data message; another records
/// everything. Both modes: single PC for the publisher, dual PC for the recorder.
#[test]
fn publish_ogg_and_ivf_and_record_them() {
    let dir = tempdir("record");
    let server = Server::start(&dir);
    let ogg = dir.join("tone.ogg");
    let ivf = dir.join("clip.ivf");
    write_ogg(&ogg, 150); // 3 s
    write_ivf(&ivf, 90, 30, 30, 3000); // 3 s, three keyframes
    let rec_dir = dir.join("rec");
    let recorder = spawn_cli(
        &server,
        &[
            "room",
            "join",
            "--identity",
            "rec",
            "--record",
            rec_dir.to_str().unwrap(),
            "--dual-pc",
            "--duration",
            "9s",
            "media-room",
        ],
    );
    std::thread::sleep(Duration::from_millis(1500));
    let out = run_cli(
        &server,
        &[
            "room",
            "join",
            "--identity",
            "pub",
            "--publish",
            ogg.to_str().unwrap(),
            "--publish",
            ivf.to_str().unwrap(),
            "--publish-data",
            "hello there",
            "--exit-after-publish",
            "media-room",
        ],
    );
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out),
        server.log_text()
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("Connected to room media-room as pub"),
        "{stdout}"
    );
    assert!(
        stdout.contains("audio/opus") && stdout.contains("video/VP8"),
        "{stdout}"
    );
    assert!(stdout.contains("Finished sending"), "{stdout}");

    let rec = wait_with_deadline(recorder, Duration::from_secs(30));
    let rec_text = text(&rec);
    assert!(rec.status.success(), "{rec_text}\n{}", server.log_text());
    assert!(
        rec_text.contains("Data from pub: hello there"),
        "{rec_text}"
    );
    assert!(rec_text.contains("Subscribed to TR_"), "{rec_text}");

    let oggs = recorded(&rec_dir, "ogg");
    assert_eq!(oggs.len(), 1, "{rec_text}");
    assert!(
        oggs[0]
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("pub-TR_")
    );
    let packets = ogg_packets(&oggs[0]);
    assert!(
        packets.len() >= 140,
        "{} packets\n{rec_text}",
        packets.len()
    );
    // Positions follow the RTP timestamps: 960 samples apart, from zero.
    assert_eq!(packets[0].0, 0);
    assert!(packets.windows(2).all(|w| w[1].0 - w[0].0 == 960));
    assert_eq!(packets[5].1[0], 31 << 3);

    let ivfs = recorded(&rec_dir, "ivf");
    assert_eq!(ivfs.len(), 1, "{rec_text}");
    let (header, frames) = ivf_frames(&ivfs[0]);
    assert_eq!(&header.fourcc, b"VP80");
    assert_eq!((header.width, header.height), (320, 240));
    assert_eq!(header.timebase_den, 90_000);
    assert!(frames.len() >= 85, "{} frames\n{rec_text}", frames.len());
    assert_eq!(frames[0].1[0] & 1, 0, "starts at a keyframe");
    assert!(
        frames.iter().all(|(_, f)| f.len() == 3000),
        "frames arrive whole"
    );
    // 30 fps: 3000 ticks of 90 kHz apart.
    let last = frames.last().unwrap().0;
    let expected = (frames.len() as u64 - 1) * 3000;
    assert!(
        last.abs_diff(expected) <= 3000,
        "last pts {last}, expected {expected}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The original form: a token from `create-token --join`, then `join --token --audio --video`.
#[test]
fn legacy_join_with_a_token() {
    let dir = tempdir("legacy");
    let server = Server::start(&dir);
    let ogg = dir.join("a.ogg");
    let ivf = dir.join("v.ivf");
    write_ogg(&ogg, 50);
    write_ivf(&ivf, 30, 30, 30, 500);
    let out = run_cli(
        &server,
        &[
            "create-token",
            "--join",
            "--room",
            "legacy",
            "--identity",
            "old",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let token = stdout
        .lines()
        .last()
        .and_then(|l| l.strip_prefix("Access token: "))
        .unwrap()
        .trim()
        .to_owned();
    let watcher = spawn_cli(
        &server,
        &[
            "room",
            "join",
            "--identity",
            "watch",
            "--auto-subscribe",
            "--duration",
            "6s",
            "legacy",
        ],
    );
    std::thread::sleep(Duration::from_millis(1000));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_livekit-cli"));
    for var in CREDENTIAL_VARS {
        cmd.env_remove(var);
    }
    let out = cmd
        .args(["--url", &server.url(), "join", "--token", &token])
        .args([
            "--audio",
            ogg.to_str().unwrap(),
            "--video",
            ivf.to_str().unwrap(),
        ])
        .arg("--exit-after-publish")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out),
        server.log_text()
    );
    let watched = wait_with_deadline(watcher, Duration::from_secs(20));
    let w = text(&watched);
    assert!(watched.status.success(), "{w}");
    assert_eq!(w.matches("Subscribed to TR_").count(), 2, "{w}");
    assert!(w.contains("from old"), "{w}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_files_and_tokens_fail_cleanly() {
    let dir = tempdir("bad");
    let server = Server::start(&dir);
    let junk = dir.join("junk.ivf");
    std::fs::write(&junk, b"not an ivf file at all, not even close").unwrap();
    let out = run_cli(
        &server,
        &[
            "room",
            "join",
            "--identity",
            "x",
            "--publish",
            junk.to_str().unwrap(),
            "r",
        ],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("junk.ivf"),
        "{}",
        text(&out)
    );
    let wav = dir.join("a.wav");
    std::fs::write(&wav, b"RIFF").unwrap();
    let out = run_cli(
        &server,
        &[
            "room",
            "join",
            "--identity",
            "x",
            "--publish",
            wav.to_str().unwrap(),
            "r",
        ],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(".ogg"),
        "{}",
        text(&out)
    );
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_livekit-cli"));
    let out = cmd
        .args(["--url", &server.url(), "join", "--token", "not-a-jwt"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("401"),
        "{}",
        text(&out)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `perf load-test` with 2 simulcast video publishers and 20 subscribers for 20 s: every
/// subscriber gets both tracks, loss stays under 1%, and the server's usage is reported.
#[test]
fn load_test_two_publishers_twenty_subscribers() {
    let dir = tempdir("load");
    let server = Server::start(&dir);
    let pid = server.pid().to_string();
    let out = run_cli(
        &server,
        &[
            "--json",
            "perf",
            "load-test",
            "--room",
            "load",
            "--duration",
            "20s",
            "--video-publishers",
            "2",
            "--subscribers",
            "20",
            "--num-per-second",
            "10",
            "--video-resolution",
            "medium",
            "--server-pid",
            &pid,
            "--threads",
            "2",
        ],
    );
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out),
        server.log_text()
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(&out)));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("joined 22/22"), "progress lines: {stderr}");
    assert_eq!(report["joined"], 22, "{report:#}");
    assert_eq!(report["subscriptions"], 40, "{report:#}");
    let loss = report["loss_percent"].as_f64().unwrap();
    assert!(loss < 1.0, "loss {loss}%: {report:#}");
    assert!(report["packets"].as_u64().unwrap() > 20_000, "{report:#}");
    let tracks = report["tracks"].as_array().unwrap();
    assert_eq!(tracks.len(), 2);
    for t in tracks {
        // The top layer of "medium" is 500 kbit/s; the server forwards the best layer.
        let kbps = t["kbps_avg"].as_f64().unwrap();
        assert!((350.0..700.0).contains(&kbps), "{t}");
        assert_eq!(t["subscribers"], 20);
    }
    let p50 = report["latency_ms"]["p50"].as_f64().unwrap();
    assert!(p50 > 0.0 && p50 < 100.0, "{report:#}");
    assert!(
        report["server"]["cpu_seconds"].as_f64().unwrap() > 0.0,
        "{report:#}"
    );
    assert!(
        report["server"]["peak_memory_kb"].as_u64().unwrap() > 1000,
        "{report:#}"
    );
    // The measured window: the server's CPU per forwarded packet, the load tester's own.
    let steady = &report["steady"];
    assert!(steady["packets"].as_u64().unwrap() > 10_000, "{report:#}");
    assert!(
        steady["cpu_us_per_packet"].as_f64().unwrap() > 0.0,
        "{report:#}"
    );
    let tester = &report["load_tester_window"];
    assert_eq!(tester["threads"], 2, "{report:#}");
    assert!(
        tester["cpu_us_per_packet"].as_f64().unwrap() > 0.0,
        "{report:#}"
    );
    // Our own sockets' drops are counted (Linux), and the loss splits into ours and the rest.
    assert!(report["socket_drops"].is_u64(), "{report:#}");
    // Every datagram read came with the kernel's receive time.
    assert!(
        report["socket_wait"]["datagrams"].as_u64().unwrap() > 20_000,
        "{report:#}"
    );
    assert_eq!(
        report["lost_by_own_sockets"].as_u64().unwrap()
            + report["lost_elsewhere"].as_u64().unwrap(),
        report["lost"].as_u64().unwrap(),
        "{report:#}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
