//! Running out of file descriptors: accepts that fail with EMFILE back off instead of spinning,
//! connections already being served carry on, and the server recovers once descriptors free up.

mod common;

use common::*;
use std::io::{ErrorKind, Read};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

/// Open-file limit (soft and hard) the server runs under: its own descriptors (stdio, rings,
/// eventfds, listeners) plus a few dozen connections.
const NOFILE: u64 = 48;

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: f64 =
        fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
    // SAFETY: sysconf has no preconditions.
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// Reads one response if it has fully arrived; `None` while nothing (or only part) came yet.
fn poll_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<u16> {
    let mut chunk = [0u8; 1024];
    match stream.read(&mut chunk) {
        Ok(0) => panic!("server closed a waiting connection instead of serving it"),
        Ok(n) => buf.extend_from_slice(&chunk[..n]),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        Err(e) => panic!("waiting connection failed: {e}"),
    }
    let text = String::from_utf8_lossy(buf);
    let complete = text.contains("\r\n\r\n") && text.ends_with("Hello, World!");
    complete.then(|| text[9..12].parse().expect("status code"))
}

#[test]
fn out_of_descriptors_backs_off_keeps_serving_and_recovers() {
    let mut cmd = cli_command(&["--bind", "127.0.0.1:0", "--workers", "1", "hello"]);
    // SAFETY: runs in the forked child before exec; setrlimit is async-signal-safe and reads a
    // local struct.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: NOFILE,
                rlim_max: NOFILE,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let server = Server::spawn_command(cmd, 1);

    // Connections being served before descriptors run out.
    let mut served: Vec<Conn> = (0..5).map(|_| connect(server.addr())).collect();
    for c in &mut served {
        assert_eq!(c.get("/").status, 200);
    }

    // Far more connections than descriptors: the kernel completes every handshake (backlog),
    // the server accepts until EMFILE, then must back off.
    let mut waiting: Vec<(TcpStream, Vec<u8>)> = (0..60)
        .map(|_| {
            let mut s = TcpStream::connect(server.addr()).expect("connect (kernel backlog)");
            std::io::Write::write_all(&mut s, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").expect("send");
            s.set_read_timeout(Some(Duration::from_millis(20)))
                .expect("timeout");
            (s, Vec::new())
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    server.expect_log("accept failed", Duration::from_secs(5));

    // Out of descriptors, with connections waiting: no busy loop. A spinning accept would burn
    // the whole second; backing off uses a few milliseconds.
    let before = cpu_seconds(server.pid());
    std::thread::sleep(Duration::from_secs(1));
    let used = cpu_seconds(server.pid()) - before;
    assert!(
        used < 0.3,
        "server used {used:.2} s of CPU in 1 s while out of descriptors"
    );

    // Connections already being served are not dropped.
    for c in &mut served {
        assert_eq!(c.get("/").status, 200);
    }

    // Free descriptors: every waiting connection is eventually accepted and answered (each is
    // closed once answered, which frees a descriptor for the next).
    drop(served);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !waiting.is_empty() {
        assert!(
            Instant::now() < deadline,
            "{} connections still unanswered after recovery\n{}",
            waiting.len(),
            server.log()
        );
        waiting.retain_mut(|(s, buf)| match poll_response(s, buf) {
            Some(status) => {
                assert_eq!(status, 200);
                false
            }
            None => true,
        });
    }
}
