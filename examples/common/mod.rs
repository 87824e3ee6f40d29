//! What the `receive` and `forward` tools share: hex, JSON lines, and the error line.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::io::Write;
use std::process::ExitCode;

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(2 * bytes.len()), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Bytes from hex text (either case, no separators).
pub fn unhex(text: &str) -> Result<Vec<u8>, String> {
    if text.len() % 2 != 0 {
        return Err(format!(
            "{text:?} is not hex: it has an odd number of digits"
        ));
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|d| u8::from_str_radix(d, 16).ok())
                .ok_or_else(|| format!("{text:?} is not hex: bad digits at offset {i}"))
        })
        .collect()
}

/// A JSON string literal.
pub fn json_str(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// Prints one line to stdout and flushes it, so a reader sees each line at once.
pub fn print_line(line: &str) {
    let mut out = std::io::stdout().lock();
    // A closed stdout leaves nobody to tell; the exit code still says it.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// The failure line: `{"error":"<name>","message":"<sentence>"}`; exit 1.
pub fn fail(name: &str, message: impl std::fmt::Display) -> ExitCode {
    print_line(&format!(
        "{{\"error\":{},\"message\":{}}}",
        json_str(name),
        json_str(&message.to_string())
    ));
    ExitCode::from(1)
}

/// Parses the command line; `--help` prints and exits 0, a usage error is a
/// failure line.
pub fn parse_args<T: clap::Parser>() -> Result<T, ExitCode> {
    T::try_parse().map_err(|e| match e.kind() {
        clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
        _ => {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("bad arguments");
            fail("Usage", first.trim_start_matches("error: "))
        }
    })
}

/// A message with its chain of causes, for people.
pub fn sentence(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let _ = write!(s, ": {cause}");
        source = cause.source();
    }
    s
}
