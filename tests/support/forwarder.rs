//! A TCP forwarder on its own loopback port whose target can be switched: an engine address
//! that another engine takes over, as a reinstalled host or a reassigned IP would.

use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// Forwards every connection to the current target; switching cuts the open ones.
pub struct Forwarder {
    /// `127.0.0.1:port`.
    pub addr: String,
    target: Arc<Mutex<String>>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Forwarder {
    /// Listens on a free loopback port and forwards to `target`.
    pub fn start(target: &str) -> Forwarder {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind forwarder");
        let addr = listener.local_addr().expect("addr").to_string();
        let target = Arc::new(Mutex::new(target.to_string()));
        let open = Arc::new(Mutex::new(Vec::new()));
        let (t, o) = (target.clone(), open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                // Under the lock `switch_to` takes: a connection is either cut by the switch or
                // made to the new target.
                let mut open = o.lock().unwrap();
                let to = t.lock().unwrap().clone();
                let Ok(server) = TcpStream::connect(&to) else { continue };
                for (mut from, mut to) in
                    [(client.try_clone(), server.try_clone()), (server.try_clone(), client.try_clone())]
                        .into_iter()
                        .filter_map(|(a, b)| Some((a.ok()?, b.ok()?)))
                {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(Shutdown::Both);
                    });
                }
                open.extend([client, server]);
            }
        });
        Forwarder { addr, target, open }
    }

    /// Sends new connections to `target` and cuts every open one.
    pub fn switch_to(&self, target: &str) {
        let mut open = self.open.lock().unwrap();
        *self.target.lock().unwrap() = target.to_string();
        for s in open.drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}
