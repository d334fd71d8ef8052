//! A hostile pipeline plugin: each topic is one attempt to escape the sandbox or exhaust the
//! host. The payload is the attack's argument (a path, an address, a size). Errors from the host
//! come back as `Err("<ErrorKind>: <message>")` so tests can assert the exact kind; attacks the
//! host must stop by trapping never return.
//!
//! A topic `gated:<attack>` first connects to the address in the `GATE` environment variable,
//! waits there for one byte, answers `!` and only then attacks: the test holds the call in flight
//! at the gate for as long as it likes and learns the moment the attack itself begins.

use std::hint::black_box;
use std::io::{Read, Write};

use outpost_sdk::pipeline::{Guest, Message};
use outpost_sdk::{bus, kv};

struct Hostile;

fn arg(payload: &[u8]) -> String {
    String::from_utf8_lossy(payload).into_owned()
}

fn number(payload: &[u8]) -> Result<usize, String> {
    arg(payload)
        .trim()
        .parse()
        .map_err(|e| format!("InvalidInput: {e}"))
}

fn io_err(e: std::io::Error) -> String {
    format!("{:?}: {e}", e.kind())
}

fn reply(topic: &str, payload: impl Into<Vec<u8>>) -> Result<Vec<Message>, String> {
    Ok(vec![Message {
        topic: topic.to_string(),
        payload: payload.into(),
    }])
}

#[inline(never)]
fn recurse(depth: u64, pad: [u8; 64]) -> u64 {
    let pad = black_box(pad);
    if black_box(depth) == u64::MAX {
        return pad[0] as u64;
    }
    recurse(depth + 1, pad) + pad[1] as u64
}

/// Waits at the test's gate; the returned connection stays open for the rest of the call.
fn pass_gate() -> Result<std::net::TcpStream, String> {
    let addr = std::env::var("GATE").map_err(|e| format!("NotFound: GATE: {e}"))?;
    let mut gate = std::net::TcpStream::connect(addr).map_err(io_err)?;
    let mut go = [0u8; 1];
    gate.read_exact(&mut go).map_err(io_err)?;
    gate.write_all(b"!").map_err(io_err)?;
    Ok(gate)
}

impl Guest for Hostile {
    fn handle(topic: String, payload: Vec<u8>) -> Result<Vec<Message>, String> {
        if let Some(attack) = topic.strip_prefix("gated:") {
            let _gate = pass_gate()?;
            return Self::handle(attack.to_string(), payload);
        }
        match topic.as_str() {
            "ok" => reply("ok", payload),
            "read" => std::fs::read(arg(&payload))
                .map_err(io_err)
                .and_then(|bytes| reply("read", bytes)),
            "write" => std::fs::write(arg(&payload), b"pwned")
                .map_err(io_err)
                .and_then(|()| reply("write", "written")),
            "list" => std::fs::read_dir(arg(&payload))
                .map_err(io_err)
                .and_then(|dir| {
                    let names: Vec<String> = dir
                        .filter_map(|e| e.ok())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect();
                    reply("list", names.join("\n"))
                }),
            "connect" => std::net::TcpStream::connect(arg(&payload))
                .map_err(io_err)
                .and_then(|_| reply("connect", "connected")),
            "resolve" => {
                use std::net::ToSocketAddrs;
                (arg(&payload).as_str(), 80)
                    .to_socket_addrs()
                    .map_err(io_err)
                    .and_then(|addrs| reply("resolve", format!("{:?}", addrs.collect::<Vec<_>>())))
            }
            "env" => match std::env::var(arg(&payload)) {
                Ok(v) => reply("env", v),
                Err(e) => Err(format!("NotFound: {e}")),
            },
            "alloc" => {
                let mib = number(&payload)?;
                let mut block = vec![0u8; mib << 20];
                for i in (0..block.len()).step_by(4096) {
                    block[i] = 1;
                }
                reply("alloc", format!("{}", black_box(block).len()))
            }
            "spin" => {
                let mut x = 0u64;
                loop {
                    x = black_box(x.wrapping_add(1));
                }
            }
            "recurse" => reply("recurse", format!("{}", recurse(0, [7; 64]))),
            "handles" => {
                // Every call to get-stdout creates a new resource handle in the host; forgetting
                // them grows the instance's handle table without bound.
                let count = number(&payload)?;
                for _ in 0..count {
                    std::mem::forget(wasip2::cli::stdout::get_stdout());
                }
                reply("handles", format!("{count}"))
            }
            "huge-output" => {
                let mib = number(&payload)?;
                reply("huge-output", vec![b'x'; mib << 20])
            }
            "many-messages" => {
                let count = number(&payload)?;
                Ok((0..count)
                    .map(|_| Message {
                        topic: "m".into(),
                        payload: Vec::new(),
                    })
                    .collect())
            }
            "publish" => bus::publish(&arg(&payload), b"x")
                .map_err(|e| format!("{e:?}"))
                .and_then(|()| reply("publish", "published")),
            "kv-fill" => {
                let chunk = vec![0u8; 64 << 10];
                for i in 0.. {
                    if let Err(e) = kv::set(&format!("fill-{i}"), &chunk) {
                        return Err(format!("{e:?} after {i} values"));
                    }
                }
                unreachable!()
            }
            "panic" => panic!("hostile plugin panics on purpose"),
            other => Err(format!("InvalidInput: unknown attack {other}")),
        }
    }
}

outpost_sdk::export_pipeline!(Hostile);
