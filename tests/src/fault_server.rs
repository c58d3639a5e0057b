//! A real HTTP/1.1 file server on 127.0.0.1 (port 0) whose faults tests
//! switch on: the misbehaving servers and networks a downloader meets.
//!
//! Each request takes the next queued [`Fault`] (or none) and counts the
//! body bytes it sends, so tests can say how much was fetched again.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What to do wrong in one response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Close the connection after this many body bytes.
    DropAfter(u64),
    /// Answer `200` with the whole file, whatever `Range` says.
    IgnoreRange,
    /// Answer this status with an empty body.
    Status(u16),
    /// Flip the byte at this file offset (if the response covers it).
    FlipByte(u64),
    /// Announce this many bytes more in `Content-Length` than are sent, then
    /// close.
    LongContentLength(u64),
    /// Send this many body bytes, then nothing for this long, then the rest.
    StallAfter(u64, Duration),
    /// Send this many bytes more than the file has.
    ExtraData(u64),
    /// Answer a range request with a `Content-Range` that does not match.
    WrongContentRange,
}

/// What a request asked for.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    pub path: String,
    pub range: Option<String>,
    pub if_range: Option<String>,
}

#[derive(Debug, Clone)]
enum Content {
    Bytes(Arc<Vec<u8>>),
    File(PathBuf, u64),
}

impl Content {
    fn len(&self) -> u64 {
        match self {
            Content::Bytes(b) => b.len() as u64,
            Content::File(_, len) => *len,
        }
    }
}

#[derive(Debug, Default)]
struct State {
    files: HashMap<String, (Content, String)>,
    faults: VecDeque<Fault>,
    requests: Vec<RequestRecord>,
}

/// The server; stops accepting when dropped.
#[derive(Debug)]
pub struct FaultServer {
    port: u16,
    state: Arc<Mutex<State>>,
    bytes_sent: Arc<AtomicU64>,
    /// Bytes per second per response; 0 = as fast as possible.
    rate: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Default for FaultServer {
    fn default() -> Self {
        Self::start()
    }
}

impl FaultServer {
    pub fn start() -> Self {
        let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State::default()));
        let bytes_sent = Arc::new(AtomicU64::new(0));
        let rate = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, b, r, st) = (
            state.clone(),
            bytes_sent.clone(),
            rate.clone(),
            stop.clone(),
        );
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (s, b, r) = (s.clone(), b.clone(), r.clone());
                std::thread::spawn(move || {
                    let _ = serve(stream, &s, &b, &r);
                });
            }
        });
        Self {
            port,
            state,
            bytes_sent,
            rate,
            stop,
        }
    }

    /// Limits every response to about `bytes_per_second` (0: no limit).
    pub fn set_rate_limit(&self, bytes_per_second: u64) {
        self.rate.store(bytes_per_second, Ordering::SeqCst);
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Serves `bytes` at `path`.
    pub fn add_bytes(&self, path: &str, bytes: Vec<u8>) {
        let etag = format!("\"{}-{}\"", bytes.len(), crate::quick_hash(&bytes));
        self.state
            .lock()
            .unwrap()
            .files
            .insert(path.to_owned(), (Content::Bytes(Arc::new(bytes)), etag));
    }

    /// Serves the file at `file` under `path`, streamed from disk.
    pub fn add_file(&self, path: &str, file: PathBuf) {
        let len = std::fs::metadata(&file).unwrap().len();
        let etag = format!("\"file-{len}\"");
        self.state
            .lock()
            .unwrap()
            .files
            .insert(path.to_owned(), (Content::File(file, len), etag));
    }

    /// Serves every file under `dir` at `prefix/<relative path>` (as the
    /// folder is now; call again after it changes).
    pub fn add_dir(&self, prefix: &str, dir: &std::path::Path) {
        let mut stack = vec![dir.to_owned()];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).unwrap().flatten() {
                let path = entry.path();
                if entry.file_type().unwrap().is_dir() {
                    stack.push(path);
                } else {
                    let rel = path
                        .strip_prefix(dir)
                        .unwrap()
                        .to_string_lossy()
                        .replace('\\', "/");
                    self.add_file(
                        &format!("{}/{rel}", prefix.trim_end_matches('/')),
                        path.clone(),
                    );
                }
            }
        }
    }

    /// Queues faults; each request takes the next one.
    pub fn push_faults(&self, faults: impl IntoIterator<Item = Fault>) {
        self.state.lock().unwrap().faults.extend(faults);
    }

    /// Body bytes sent so far over all requests.
    pub fn bytes_sent(&self) -> u64 {
        self.bytes_sent.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> Vec<RequestRecord> {
        self.state.lock().unwrap().requests.clone()
    }
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(
    stream: TcpStream,
    state: &Mutex<State>,
    sent: &AtomicU64,
    rate: &AtomicU64,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut stream = stream;
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .to_owned();
    let mut headers = HashMap::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let range = headers.get("range").cloned();
    let if_range = headers.get("if-range").cloned();
    let (entry, fault) = {
        let mut s = state.lock().unwrap();
        s.requests.push(RequestRecord {
            path: path.clone(),
            range: range.clone(),
            if_range: if_range.clone(),
        });
        let fault = s.faults.pop_front();
        (s.files.get(&path).cloned(), fault)
    };
    let Some((content, etag)) = entry else {
        return write!(
            stream,
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
    };
    if let Some(Fault::Status(code)) = fault {
        return write!(
            stream,
            "HTTP/1.1 {code} Fault\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
    }
    let total = content.len();
    let mut start = 0;
    let mut partial = false;
    if let Some(r) = range.as_deref().and_then(|r| r.strip_prefix("bytes="))
        && fault != Some(Fault::IgnoreRange)
        && if_range.as_deref().is_none_or(|t| t == etag)
        && let Some((from, _)) = r.split_once('-')
        && let Ok(from) = from.parse::<u64>()
    {
        if from >= total {
            return write!(
                stream,
                "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{total}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
        start = from;
        partial = true;
    }
    let extra = match fault {
        Some(Fault::ExtraData(n)) => n,
        _ => 0,
    };
    let body_len = total - start + extra;
    let announced = match fault {
        Some(Fault::LongContentLength(n)) => body_len + n,
        _ => body_len,
    };
    let mut head = if partial {
        let shown_start = if fault == Some(Fault::WrongContentRange) {
            start + 1
        } else {
            start
        };
        format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {shown_start}-{}/{total}\r\n",
            total - 1
        )
    } else {
        "HTTP/1.1 200 OK\r\n".to_owned()
    };
    head.push_str(&format!(
        "Content-Length: {announced}\r\nETag: {etag}\r\nAccept-Ranges: bytes\r\nConnection: close\r\n\r\n"
    ));
    stream.write_all(head.as_bytes())?;

    let limit = match fault {
        Some(Fault::DropAfter(n)) => n.min(body_len),
        _ => body_len,
    };
    let mut source = open(&content)?;
    source.seek(SeekFrom::Start(start))?;
    let mut offset = start;
    let mut written = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    let started = std::time::Instant::now();
    while written < limit {
        let per_second = rate.load(Ordering::SeqCst);
        if per_second > 0 {
            let due = Duration::from_secs_f64(written as f64 / per_second as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        let want = usize::try_from((limit - written).min(buf.len() as u64)).unwrap();
        let mut n = source.read(&mut buf[..want])?;
        if n == 0 {
            // Past the end of the file: extra data is zeros.
            buf[..want].fill(0);
            n = want;
        }
        if let Some(Fault::StallAfter(after, pause)) = fault
            && written <= after
            && written + n as u64 > after
        {
            let first = usize::try_from(after - written).unwrap();
            stream.write_all(&buf[..first])?;
            stream.flush()?;
            sent.fetch_add(first as u64, Ordering::SeqCst);
            std::thread::sleep(pause);
            stream.write_all(&buf[first..n])?;
            sent.fetch_add((n - first) as u64, Ordering::SeqCst);
        } else {
            if let Some(Fault::FlipByte(at)) = fault
                && at >= offset
                && at < offset + n as u64
            {
                buf[usize::try_from(at - offset).unwrap()] ^= 0xff;
            }
            stream.write_all(&buf[..n])?;
            sent.fetch_add(n as u64, Ordering::SeqCst);
        }
        offset += n as u64;
        written += n as u64;
    }
    stream.flush()?;
    let _ = stream.shutdown(std::net::Shutdown::Both);
    Ok(())
}

fn open(content: &Content) -> std::io::Result<Box<dyn ReadSeek>> {
    Ok(match content {
        Content::Bytes(b) => Box::new(std::io::Cursor::new(Shared(b.clone()))),
        Content::File(path, _) => Box::new(std::fs::File::open(path)?),
    })
}

struct Shared(Arc<Vec<u8>>);

impl AsRef<[u8]> for Shared {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

trait ReadSeek: Read + Seek + Send {}
impl<T: Read + Seek + Send> ReadSeek for T {}
