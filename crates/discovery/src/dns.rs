//! `dns_sd_configs`: targets from SRV, A, AAAA, MX and NS records, resolved
//! again every `refresh_interval`.
//!
//! The resolver is deliberately small (see the crate docs): it builds one
//! query per name and type, sends it over UDP to each configured server in
//! turn (falling back to TCP when the answer is truncated), and reads the
//! answer section, following name compression. It does not cache and does
//! not apply `search` domains: names in `dns_sd_configs` are meant to be
//! fully qualified, as with Prometheus.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use pharos_config::{DnsRecordType, DnsSdConfig};
use pharos_model::{Labels, LabelsBuilder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::{ADDRESS_LABEL, BoxFuture, Discoverer, DiscoveryError, TargetGroup};

/// The queried name.
pub const NAME_LABEL: &str = "__meta_dns_name";
/// The target host of an SRV record.
pub const SRV_TARGET_LABEL: &str = "__meta_dns_srv_record_target";
/// The port of an SRV record.
pub const SRV_PORT_LABEL: &str = "__meta_dns_srv_record_port";
/// The host of an MX record.
pub const MX_TARGET_LABEL: &str = "__meta_dns_mx_record_target";
/// The host of an NS record.
pub const NS_TARGET_LABEL: &str = "__meta_dns_ns_record_target";

const TYPE_A: u16 = 1;
const TYPE_NS: u16 = 2;
const TYPE_MX: u16 = 15;
const TYPE_AAAA: u16 = 28;
const TYPE_SRV: u16 = 33;
const CLASS_IN: u16 = 1;

/// One answer record the provider understands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// An A or AAAA address.
    Addr(IpAddr),
    /// An SRV record: target host (no trailing dot) and port.
    Srv {
        /// Host name.
        target: String,
        /// Port.
        port: u16,
    },
    /// An MX record's host.
    Mx(String),
    /// An NS record's host.
    Ns(String),
}

fn type_code(t: DnsRecordType) -> u16 {
    match t {
        DnsRecordType::Srv => TYPE_SRV,
        DnsRecordType::A => TYPE_A,
        DnsRecordType::Aaaa => TYPE_AAAA,
        DnsRecordType::Mx => TYPE_MX,
        DnsRecordType::Ns => TYPE_NS,
    }
}

/// Encodes a query for `name` and `qtype` with message id `id`.
pub fn encode_query(id: u16, name: &str, qtype: u16) -> Result<Vec<u8>, DiscoveryError> {
    let mut m = Vec::with_capacity(name.len() + 18);
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&[0x01, 0x00]); // recursion desired
    m.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // one question
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(DiscoveryError::Dns(format!("invalid DNS name {name:?}")));
        }
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.push(0);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&CLASS_IN.to_be_bytes());
    Ok(m)
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// Reads a possibly compressed name at `at`; returns it (no trailing dot)
/// and the offset after it in the original position.
fn read_name(msg: &[u8], mut at: usize) -> Option<(String, usize)> {
    let mut out = String::new();
    let mut end = None;
    for _ in 0..128 {
        let len = *msg.get(at)?;
        if len & 0xC0 == 0xC0 {
            let ptr = usize::from(be16(msg, at)? & 0x3FFF);
            end.get_or_insert(at + 2);
            at = ptr;
            continue;
        }
        if len == 0 {
            return Some((out, end.unwrap_or(at + 1)));
        }
        let label = msg.get(at + 1..at + 1 + usize::from(len))?;
        if !out.is_empty() {
            out.push('.');
        }
        out.push_str(&String::from_utf8_lossy(label));
        at += 1 + usize::from(len);
    }
    None
}

/// What a response said.
#[derive(Debug, PartialEq, Eq)]
pub struct Answer {
    /// The truncation bit (retry over TCP).
    pub truncated: bool,
    /// The response code (0 success, 3 no such name).
    pub rcode: u8,
    /// The records of the asked type.
    pub records: Vec<Record>,
}

/// Decodes a response to query `id` of type `qtype`.
pub fn decode_response(msg: &[u8], id: u16, qtype: u16) -> Result<Answer, DiscoveryError> {
    let bad = || DiscoveryError::Dns("malformed DNS response".to_string());
    if be16(msg, 0).ok_or_else(bad)? != id {
        return Err(DiscoveryError::Dns("DNS response id mismatch".to_string()));
    }
    let flags = be16(msg, 2).ok_or_else(bad)?;
    let qd = be16(msg, 4).ok_or_else(bad)?;
    let an = be16(msg, 6).ok_or_else(bad)?;
    let mut at = 12;
    for _ in 0..qd {
        let (_, next) = read_name(msg, at).ok_or_else(bad)?;
        at = next + 4;
    }
    let mut records = Vec::new();
    for _ in 0..an {
        let (_, next) = read_name(msg, at).ok_or_else(bad)?;
        let rtype = be16(msg, next).ok_or_else(bad)?;
        let rdlen = usize::from(be16(msg, next + 8).ok_or_else(bad)?);
        let rd = next + 10;
        let data = msg.get(rd..rd + rdlen).ok_or_else(bad)?;
        at = rd + rdlen;
        if rtype != qtype {
            continue; // CNAMEs and the like
        }
        let rec = match rtype {
            TYPE_A => {
                let o: [u8; 4] = data.try_into().map_err(|_| bad())?;
                Record::Addr(IpAddr::V4(Ipv4Addr::from(o)))
            }
            TYPE_AAAA => {
                let o: [u8; 16] = data.try_into().map_err(|_| bad())?;
                Record::Addr(IpAddr::V6(Ipv6Addr::from(o)))
            }
            TYPE_SRV => {
                let port = be16(msg, rd + 4).ok_or_else(bad)?;
                let (target, _) = read_name(msg, rd + 6).ok_or_else(bad)?;
                Record::Srv { target, port }
            }
            TYPE_MX => Record::Mx(read_name(msg, rd + 2).ok_or_else(bad)?.0),
            TYPE_NS => Record::Ns(read_name(msg, rd).ok_or_else(bad)?.0),
            _ => continue,
        };
        records.push(rec);
    }
    Ok(Answer {
        truncated: flags & 0x0200 != 0,
        rcode: (flags & 0x000F) as u8,
        records,
    })
}

/// The name servers of `/etc/resolv.conf` (port 53); `127.0.0.1:53` when
/// none is listed, as the Go and glibc resolvers do.
pub fn system_servers() -> Vec<SocketAddr> {
    let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let mut v: Vec<SocketAddr> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|s| s.trim().split('%').next()?.parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect();
    if v.is_empty() {
        v.push(SocketAddr::from(([127, 0, 0, 1], 53)));
    }
    v
}

/// Resolves `name` for `qtype` by asking `servers` in turn. A name that
/// does not exist gives no records (not an error), as in Prometheus.
pub async fn lookup(
    servers: &[SocketAddr],
    name: &str,
    qtype: u16,
    timeout: Duration,
) -> Result<Vec<Record>, DiscoveryError> {
    let mut last_err = DiscoveryError::Dns(format!("no DNS servers to ask for {name:?}"));
    for (i, server) in servers.iter().enumerate() {
        let id = (std::process::id() as u16) ^ (i as u16) ^ 0x5a5a;
        let q = encode_query(id, name, qtype)?;
        match tokio::time::timeout(timeout, exchange(*server, &q, id, qtype)).await {
            Ok(Ok(a)) if a.rcode == 0 || a.rcode == 3 => return Ok(a.records),
            Ok(Ok(a)) => {
                last_err = DiscoveryError::Dns(format!(
                    "lookup {name} on {server}: server answered with rcode {}",
                    a.rcode
                ));
            }
            Ok(Err(e)) => last_err = DiscoveryError::Dns(format!("lookup {name} on {server}: {e}")),
            Err(_) => {
                last_err = DiscoveryError::Dns(format!("lookup {name} on {server}: i/o timeout"));
            }
        }
    }
    Err(last_err)
}

async fn exchange(
    server: SocketAddr,
    q: &[u8],
    id: u16,
    qtype: u16,
) -> Result<Answer, DiscoveryError> {
    let io = |e: std::io::Error| DiscoveryError::Dns(e.to_string());
    let bind: SocketAddr = if server.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    let sock = tokio::net::UdpSocket::bind(bind).await.map_err(io)?;
    sock.connect(server).await.map_err(io)?;
    sock.send(q).await.map_err(io)?;
    let mut buf = vec![0u8; 4096];
    loop {
        let n = sock.recv(&mut buf).await.map_err(io)?;
        match decode_response(&buf[..n], id, qtype) {
            Ok(a) if a.truncated => break,
            Ok(a) => return Ok(a),
            // A stray datagram with another id: keep waiting.
            Err(_) => continue,
        }
    }
    let mut tcp = tokio::net::TcpStream::connect(server).await.map_err(io)?;
    let len = u16::try_from(q.len()).map_err(|_| DiscoveryError::Dns("query too long".into()))?;
    tcp.write_all(&len.to_be_bytes()).await.map_err(io)?;
    tcp.write_all(q).await.map_err(io)?;
    let n = usize::from(tcp.read_u16().await.map_err(io)?);
    let mut msg = vec![0u8; n];
    tcp.read_exact(&mut msg).await.map_err(io)?;
    decode_response(&msg, id, qtype)
}

/// The target group of one name's records.
pub fn group_for(name: &str, records: &[Record], port: u16) -> TargetGroup {
    let mut targets = Vec::with_capacity(records.len());
    for r in records {
        let mut b = LabelsBuilder::new();
        b.set(NAME_LABEL, name);
        b.set(SRV_TARGET_LABEL, "");
        b.set(SRV_PORT_LABEL, "");
        b.set(MX_TARGET_LABEL, "");
        b.set(NS_TARGET_LABEL, "");
        let addr = match r {
            Record::Addr(IpAddr::V4(ip)) => format!("{ip}:{port}"),
            Record::Addr(IpAddr::V6(ip)) => format!("[{ip}]:{port}"),
            Record::Srv { target, port: p } => {
                b.set(SRV_TARGET_LABEL, &format!("{target}."));
                b.set(SRV_PORT_LABEL, &p.to_string());
                format!("{target}:{p}")
            }
            Record::Mx(host) => {
                b.set(MX_TARGET_LABEL, &format!("{host}."));
                format!("{host}:{port}")
            }
            Record::Ns(host) => {
                b.set(NS_TARGET_LABEL, &format!("{host}."));
                format!("{host}:{port}")
            }
        };
        b.set(ADDRESS_LABEL, &addr);
        targets.push(b.build());
    }
    TargetGroup {
        source: name.to_string(),
        targets,
        labels: Labels::empty(),
    }
}

/// Discovers targets from DNS records.
pub struct DnsDiscoverer {
    cfg: DnsSdConfig,
    servers: Vec<SocketAddr>,
    refresh: Duration,
}

impl DnsDiscoverer {
    /// A provider for `cfg` asking `servers` (empty: the system's).
    pub fn new(cfg: &DnsSdConfig, servers: Vec<SocketAddr>) -> DnsDiscoverer {
        DnsDiscoverer {
            cfg: cfg.clone(),
            servers,
            refresh: Duration::from_millis(u64::try_from(cfg.refresh_interval.0).unwrap_or(0))
                .max(Duration::from_millis(1)),
        }
    }
}

impl Discoverer for DnsDiscoverer {
    fn run(self: Box<Self>, tx: mpsc::Sender<Vec<TargetGroup>>) -> BoxFuture {
        Box::pin(async move {
            let servers = if self.servers.is_empty() {
                system_servers()
            } else {
                self.servers.clone()
            };
            let qtype = type_code(self.cfg.record_type);
            loop {
                let mut update = Vec::new();
                for name in &self.cfg.names {
                    match lookup(&servers, name, qtype, Duration::from_secs(5)).await {
                        Ok(recs) => update.push(group_for(name, &recs, self.cfg.port)),
                        // Keep the name's last targets.
                        Err(e) => tracing::error!(err = %e, "Error refreshing DNS targets"),
                    }
                }
                if !update.is_empty() && tx.send(update).await.is_err() {
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(self.refresh) => {}
                    _ = tx.closed() => return,
                }
            }
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// Builds an answer to `query` with the given records, each as
    /// `(type, rdata)`; the answer names point at the question (compression).
    fn answer(query: &[u8], truncated: bool, rcode: u8, rrs: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut m = query.to_vec();
        m[2] = 0x81 | if truncated { 0x02 } else { 0 };
        m[3] = 0x80 | rcode;
        m[6..8].copy_from_slice(&(rrs.len() as u16).to_be_bytes());
        for (t, rd) in rrs {
            m.extend_from_slice(&[0xC0, 12]);
            m.extend_from_slice(&t.to_be_bytes());
            m.extend_from_slice(&CLASS_IN.to_be_bytes());
            m.extend_from_slice(&60u32.to_be_bytes());
            m.extend_from_slice(&(rd.len() as u16).to_be_bytes());
            m.extend_from_slice(rd);
        }
        m
    }

    fn name_bytes(n: &str) -> Vec<u8> {
        let mut v = Vec::new();
        for l in n.split('.') {
            v.push(l.len() as u8);
            v.extend_from_slice(l.as_bytes());
        }
        v.push(0);
        v
    }

    fn srv(port: u16, target: &str) -> (u16, Vec<u8>) {
        let mut rd = vec![0, 10, 0, 5];
        rd.extend_from_slice(&port.to_be_bytes());
        rd.extend_from_slice(&name_bytes(target));
        (TYPE_SRV, rd)
    }

    /// A UDP (and TCP, for truncated answers) DNS server on 127.0.0.1
    /// answering from a fixed table keyed by question name and type.
    type Table = Vec<(&'static str, u16, Vec<(u16, Vec<u8>)>)>;

    async fn server(table: Table, truncate_udp: bool) -> SocketAddr {
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        let tcp = tokio::net::TcpListener::bind(addr).await.unwrap();
        let table = std::sync::Arc::new(table);
        let respond = {
            let table = table.clone();
            move |q: &[u8], truncated: bool| -> Vec<u8> {
                let (name, end) = read_name(q, 12).unwrap();
                let qtype = be16(q, end).unwrap();
                match table.iter().find(|(n, t, _)| *n == name && *t == qtype) {
                    Some((_, _, rrs)) if truncated => answer(&q[..end + 4], true, 0, &rrs[..0]),
                    Some((_, _, rrs)) => answer(&q[..end + 4], false, 0, rrs),
                    None => answer(&q[..end + 4], false, 3, &[]),
                }
            }
        };
        let r2 = respond.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            loop {
                let (n, from) = udp.recv_from(&mut buf).await.unwrap();
                let a = respond(&buf[..n], truncate_udp);
                udp.send_to(&a, from).await.unwrap();
            }
        });
        tokio::spawn(async move {
            loop {
                let (mut s, _) = tcp.accept().await.unwrap();
                let n = usize::from(s.read_u16().await.unwrap());
                let mut q = vec![0; n];
                s.read_exact(&mut q).await.unwrap();
                let a = r2(&q, false);
                s.write_all(&(a.len() as u16).to_be_bytes()).await.unwrap();
                s.write_all(&a).await.unwrap();
            }
        });
        addr
    }

    #[tokio::test]
    async fn srv_a_aaaa_mx_ns_lookups() {
        let addr = server(
            vec![
                (
                    "_node._tcp.example.org",
                    TYPE_SRV,
                    vec![srv(9100, "n1.example.org"), srv(9101, "n2.example.org")],
                ),
                ("db.example.org", TYPE_A, vec![(TYPE_A, vec![10, 0, 0, 1])]),
                (
                    "db.example.org",
                    TYPE_AAAA,
                    vec![(TYPE_AAAA, {
                        let mut v = vec![0u8; 16];
                        v[0] = 0x20;
                        v[1] = 0x01;
                        v[15] = 1;
                        v
                    })],
                ),
                (
                    "example.org",
                    TYPE_MX,
                    vec![(TYPE_MX, {
                        let mut v = vec![0, 10];
                        v.extend(name_bytes("mail.example.org"));
                        v
                    })],
                ),
                (
                    "example.org",
                    TYPE_NS,
                    vec![(TYPE_NS, name_bytes("ns1.example.org"))],
                ),
            ],
            false,
        )
        .await;
        let t = Duration::from_secs(2);
        let recs = lookup(&[addr], "_node._tcp.example.org.", TYPE_SRV, t)
            .await
            .unwrap();
        assert_eq!(
            recs,
            vec![
                Record::Srv {
                    target: "n1.example.org".into(),
                    port: 9100
                },
                Record::Srv {
                    target: "n2.example.org".into(),
                    port: 9101
                },
            ]
        );
        let g = group_for("_node._tcp.example.org", &recs, 0);
        assert_eq!(g.targets[0].get("__address__"), Some("n1.example.org:9100"));
        assert_eq!(g.targets[0].get(SRV_TARGET_LABEL), Some("n1.example.org."));
        assert_eq!(g.targets[0].get(SRV_PORT_LABEL), Some("9100"));
        assert_eq!(g.targets[0].get(NAME_LABEL), Some("_node._tcp.example.org"));

        let a = lookup(&[addr], "db.example.org", TYPE_A, t).await.unwrap();
        assert_eq!(
            group_for("db.example.org", &a, 80).targets[0].get("__address__"),
            Some("10.0.0.1:80")
        );
        let aaaa = lookup(&[addr], "db.example.org", TYPE_AAAA, t)
            .await
            .unwrap();
        assert_eq!(
            group_for("db.example.org", &aaaa, 80).targets[0].get("__address__"),
            Some("[2001::1]:80")
        );
        let mx = lookup(&[addr], "example.org", TYPE_MX, t).await.unwrap();
        let g = group_for("example.org", &mx, 25);
        assert_eq!(g.targets[0].get("__address__"), Some("mail.example.org:25"));
        assert_eq!(g.targets[0].get(MX_TARGET_LABEL), Some("mail.example.org."));
        let ns = lookup(&[addr], "example.org", TYPE_NS, t).await.unwrap();
        assert_eq!(
            group_for("example.org", &ns, 53).targets[0].get(NS_TARGET_LABEL),
            Some("ns1.example.org.")
        );

        // NXDOMAIN: no records, not an error.
        assert!(
            lookup(&[addr], "nope.example.org", TYPE_A, t)
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn truncated_answers_retry_over_tcp() {
        let addr = server(
            vec![("big.example.org", TYPE_SRV, vec![srv(1, "h.example.org")])],
            true,
        )
        .await;
        let recs = lookup(&[addr], "big.example.org", TYPE_SRV, Duration::from_secs(2))
            .await
            .unwrap();
        assert_eq!(
            recs,
            vec![Record::Srv {
                target: "h.example.org".into(),
                port: 1
            }]
        );
    }

    #[tokio::test]
    async fn discoverer_sends_groups_and_times_out_cleanly() {
        let addr = server(
            vec![(
                "_x._tcp.example.org",
                TYPE_SRV,
                vec![srv(80, "a.example.org")],
            )],
            false,
        )
        .await;
        let cfg = DnsSdConfig {
            names: vec!["_x._tcp.example.org".into()],
            record_type: DnsRecordType::Srv,
            port: 0,
            refresh_interval: pharos_model::Duration(30_000),
        };
        let (tx, mut rx) = mpsc::channel(2);
        tokio::spawn(Box::new(DnsDiscoverer::new(&cfg, vec![addr])).run(tx));
        let u = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(u.len(), 1);
        assert_eq!(u[0].source, "_x._tcp.example.org");
        assert_eq!(u[0].targets[0].get("__address__"), Some("a.example.org:80"));

        // A server that never answers: a timeout error naming the server.
        let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let e = lookup(
            &[silent.local_addr().unwrap()],
            "a.b",
            TYPE_A,
            Duration::from_millis(100),
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("i/o timeout"), "{e}");
    }

    #[test]
    fn malformed_responses_are_errors() {
        let q = encode_query(7, "a.b", TYPE_A).unwrap();
        assert!(decode_response(&q[..5], 7, TYPE_A).is_err());
        assert!(decode_response(&q, 8, TYPE_A).is_err());
        let mut a = answer(&q, false, 0, &[(TYPE_A, vec![1, 2, 3])]);
        assert!(decode_response(&a, 7, TYPE_A).is_err());
        // A compression loop.
        a = answer(&q, false, 0, &[]);
        a[12] = 0xC0;
        a[13] = 12;
        assert!(decode_response(&a, 7, TYPE_A).is_err());
        assert!(encode_query(1, "a..b", TYPE_A).is_err());
    }

    proptest::proptest! {
        #[test]
        fn decoding_never_panics(b in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = decode_response(&b, u16::from_be_bytes([b.first().copied().unwrap_or(0), b.get(1).copied().unwrap_or(0)]), TYPE_SRV);
        }
    }
}
