//! Ordering one send round's datagrams by destination before segmented sends
//! (`SendBatch::by_destination`), as the media thread does after each wake: a video frame of
//! 6 packets to 10 and to 100 subscribers, interleaved as the engine writes them (packet by
//! packet, each to every subscriber). No sockets.

use std::hint::black_box;
use std::net::SocketAddr;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use lkr_driver::batch::SendBatch;
use lkr_sfu::Transmit;

const PACKETS: usize = 6;

fn round(subscribers: usize) -> Vec<Transmit> {
    let mut items = Vec::with_capacity(lkr_driver::batch::WINDOW);
    for p in 0..PACKETS {
        for s in 0..subscribers {
            let dest: SocketAddr = format!("10.77.0.2:{}", 40000 + s)
                .parse()
                .expect("an address");
            items.push(Transmit {
                dest,
                data: vec![p as u8; 1100],
            });
        }
    }
    items
}

fn by_destination(c: &mut Criterion) {
    let mut group = c.benchmark_group("send_order");
    for subscribers in [10usize, 100] {
        let mut sb = SendBatch::grouping(true);
        let template = round(subscribers);
        group.throughput(Throughput::Elements((PACKETS * subscribers) as u64));
        group.bench_function(BenchmarkId::from_parameter(subscribers), |b| {
            b.iter_batched_ref(
                || {
                    let mut v = Vec::with_capacity(lkr_driver::batch::WINDOW);
                    v.extend(template.iter().map(|t| Transmit {
                        dest: t.dest,
                        data: Vec::new(),
                    }));
                    v
                },
                |items| {
                    sb.by_destination(items);
                    black_box(items.len())
                },
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

criterion_group!(benches, by_destination);
criterion_main!(benches);
