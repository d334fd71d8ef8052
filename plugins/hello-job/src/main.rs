//! A `wasi:cli/command` job that exercises what a job may be granted:
//!
//! - `hello-job [NAME]` greets NAME (default: world) on stdout;
//! - `hello-job env` prints the environment it was given, one `K=V` a line;
//! - `hello-job copy FROM TO` copies a file (between preopened directories);
//! - `hello-job ls DIR` lists a directory, sorted;
//! - `hello-job exit N` writes a line to stderr and exits with status N.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("env") => {
            let mut vars: Vec<(String, String)> = std::env::vars().collect();
            vars.sort();
            for (k, v) in vars {
                println!("{k}={v}");
            }
            ExitCode::SUCCESS
        }
        Some("copy") if args.len() == 3 => match std::fs::copy(&args[1], &args[2]) {
            Ok(bytes) => {
                println!("copied {bytes} bytes");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("copy {} -> {}: {e}", args[1], args[2]);
                ExitCode::from(1)
            }
        },
        Some("ls") if args.len() == 2 => match std::fs::read_dir(&args[1]) {
            Ok(entries) => {
                let mut names: Vec<String> = entries
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect();
                names.sort();
                for name in names {
                    println!("{name}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("ls {}: {e}", args[1]);
                ExitCode::from(1)
            }
        },
        Some("exit") if args.len() == 2 => {
            let code: u8 = args[1].parse().unwrap_or(255);
            eprintln!("exiting with {code}");
            ExitCode::from(code)
        }
        name => {
            println!("hello, {}!", name.unwrap_or("world"));
            ExitCode::SUCCESS
        }
    }
}
