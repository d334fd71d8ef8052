//! A real mosquitto broker started by a test, and an MQTT subscriber, shared by the test
//! suites that need them (`#[path]`-included; every item is used by at least one of them).
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::{mpsc, watch};

/// Generous limit for anything to happen: CI machines have 2 slow cores.
pub const PATIENCE: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// mosquitto

pub fn mosquitto_binary() -> PathBuf {
    let missing = || -> ! {
        panic!(
            "mosquitto is not installed; these tests need a real MQTT broker. \
             Install it with `apt-get install -y mosquitto` (Debian package `mosquitto`), \
             or point OUTPOST_MOSQUITTO at the binary."
        )
    };
    if let Some(path) = std::env::var_os("OUTPOST_MOSQUITTO") {
        let path = PathBuf::from(path);
        if !path.is_file() {
            missing();
        }
        return path;
    }
    let mut candidates = vec![
        PathBuf::from("/usr/sbin/mosquitto"),
        PathBuf::from("/usr/local/sbin/mosquitto"),
    ];
    if let Some(paths) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&paths).map(|dir| dir.join("mosquitto")));
    }
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| missing())
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A mosquitto process on 127.0.0.1, killed on drop.
pub struct Mosquitto {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Mosquitto {
    /// A broker without persistence on a free port.
    pub fn start() -> Mosquitto {
        Self::start_with(false)
    }

    /// A broker on a free port; `persistent` keeps sessions and queued messages across a
    /// graceful restart.
    pub fn start_with(persistent: bool) -> Mosquitto {
        let mut last = String::new();
        for _ in 0..5 {
            match Self::try_on_port(free_port(), persistent) {
                Ok(broker) => return broker,
                // someone took the port between our probe and mosquitto's bind
                Err(why) => last = why,
            }
        }
        panic!("could not start mosquitto: {last}");
    }

    /// A broker without persistence on `port`.
    pub fn on_port(port: u16) -> Mosquitto {
        Self::try_on_port(port, false).unwrap_or_else(|why| panic!("{why}"))
    }

    fn try_on_port(port: u16, persistent: bool) -> Result<Mosquitto, String> {
        mosquitto_binary(); // fail early, and with the install hint, if it is missing
        let dir = tempfile::tempdir().unwrap();
        let persistence = if persistent {
            format!(
                "persistence true\npersistence_location {}/\npersistence_file mosquitto.db\n",
                dir.path().display()
            )
        } else {
            "persistence false\n".to_string()
        };
        std::fs::write(
            dir.path().join("mosquitto.conf"),
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\n{persistence}\
                 max_queued_messages 100000\nuser {}\n",
                current_user()
            ),
        )
        .unwrap();
        let mut broker = Mosquitto {
            port,
            dir,
            child: None,
        };
        broker.launch()?;
        Ok(broker)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }

    /// Starts the process and waits until it accepts connections.
    fn launch(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "mosquitto already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("mosquitto.log"))
            .unwrap();
        let mut child = Command::new(mosquitto_binary())
            .arg("-c")
            .arg(self.dir.path().join("mosquitto.conf"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("spawning mosquitto: {e}"))?;
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return Err(format!(
                    "mosquitto on port {} exited with {status}; log:\n{}",
                    self.port,
                    self.log()
                ));
            }
            let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "mosquitto did not listen on port {}; log:\n{}",
                    self.port,
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops it the graceful way (SIGTERM), so a persistent broker saves its state.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let status = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status()
                .unwrap();
            assert!(status.success(), "kill -TERM failed");
            child.wait().unwrap();
        }
    }

    /// Starts it again on the same port (with the same config and state directory).
    pub fn restart(&mut self) {
        self.launch().unwrap_or_else(|why| panic!("{why}"));
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

// ---------------------------------------------------------------------------------------------
// an MQTT subscriber (rumqttc)

pub struct Subscriber {
    rx: mpsc::UnboundedReceiver<(String, Vec<u8>)>,
    /// Everything received so far, in arrival order.
    pub got: Vec<(String, Vec<u8>)>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Subscriber {
    /// Connects to the broker on `port`, subscribes to `filter` with QoS 1 and returns once the
    /// broker confirmed the subscription. `session` names a persistent session (clean_session
    /// false) that outlives disconnects; `None` is a clean session, resubscribed on reconnect.
    pub async fn connect(port: u16, filter: &str, session: Option<&str>) -> Subscriber {
        let id = session.map_or_else(
            || format!("sub-{}-{port}", std::process::id()),
            str::to_string,
        );
        let mut options = MqttOptions::new(id, "127.0.0.1", port);
        options
            .set_keep_alive(Duration::from_secs(60))
            .set_clean_session(session.is_none());
        let (client, mut events) = AsyncClient::new(options, 16);
        let (tx, rx) = mpsc::unbounded_channel();
        let (subscribed_tx, mut subscribed) = watch::channel(false);
        let filter = filter.to_string();
        let task = tokio::spawn(async move {
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                        if !ack.session_present {
                            client
                                .try_subscribe(filter.clone(), QoS::AtLeastOnce)
                                .unwrap();
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = subscribed_tx.send(true);
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let _ = tx.send((p.topic.clone(), p.payload.to_vec()));
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        tokio::time::timeout(PATIENCE, subscribed.wait_for(|s| *s))
            .await
            .expect("the subscriber was not subscribed in time")
            .unwrap();
        Subscriber {
            rx,
            got: Vec::new(),
            task,
        }
    }

    pub fn drain(&mut self) {
        while let Ok(m) = self.rx.try_recv() {
            self.got.push(m);
        }
    }

    /// Waits until `done(received so far)` holds.
    pub async fn wait_until(&mut self, what: &str, done: impl Fn(&[(String, Vec<u8>)]) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            self.drain();
            if done(&self.got) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; received {} messages",
                self.got.len()
            );
            let _ = tokio::time::timeout(Duration::from_millis(100), self.rx.recv())
                .await
                .map(|m| m.map(|m| self.got.push(m)));
        }
    }

    /// Payloads received, as strings, in arrival order.
    pub fn payloads(&self) -> Vec<String> {
        self.got
            .iter()
            .map(|(_, p)| String::from_utf8(p.clone()).unwrap())
            .collect()
    }
}
