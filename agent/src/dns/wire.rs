//! DNS messages on the wire, for the resolver's hot path: a query is read in place and an
//! answer written into a reused buffer, without building message objects (RFC 1035 §4,
//! EDNS from RFC 6891). What a query may contain is checked here; anything this cannot
//! answer itself is forwarded whole.

use super::names::Lookup;

pub const NOERROR: u8 = 0;
pub const FORMERR: u8 = 1;
pub const SERVFAIL: u8 = 2;
pub const NOTIMP: u8 = 4;
/// Extended (EDNS) rcode 16: the upper bits go in the OPT record.
const BADVERS: u8 = 16;

pub const TYPE_A: u16 = 1;
pub const TYPE_PTR: u16 = 12;
const TYPE_OPT: u16 = 41;
pub const CLASS_IN: u16 = 1;

const HEADER: usize = 12;
/// What a classic UDP answer may hold, and the most this resolver offers with EDNS (the
/// size DNS flag day 2020 settled on: no fragmentation on any usual path).
pub const CLASSIC_UDP: usize = 512;
const EDNS_UDP: u16 = 1232;
/// A message over TCP.
pub const TCP_MAX: usize = 65535;

/// A query, read in place.
#[derive(Debug, PartialEq, Eq)]
pub struct Query<'a> {
    pub id: u16,
    recursion_desired: bool,
    /// The question as sent: its name, type and class.
    question: &'a [u8],
    pub qtype: u16,
    pub qclass: u16,
    /// The client's EDNS payload size and version, when it sent an OPT record.
    edns: Option<(u16, u8)>,
}

/// Why a query gets no answer of its own.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// Not a query at all (too short, or a response): dropped, so that two resolvers
    /// cannot bounce a message between them.
    Dropped,
    /// Answered with this rcode and nothing else.
    Answer { id: u16, rcode: u8 },
}

impl<'a> Query<'a> {
    pub fn parse(packet: &'a [u8]) -> Result<Query<'a>, Refused> {
        if packet.len() < HEADER || packet[2] & 0x80 != 0 {
            return Err(Refused::Dropped);
        }
        let id = u16::from_be_bytes([packet[0], packet[1]]);
        let count = |at: usize| u16::from_be_bytes([packet[at], packet[at + 1]]);
        let refuse = |rcode| Refused::Answer { id, rcode };
        if (packet[2] >> 3) & 0x0f != 0 {
            return Err(refuse(NOTIMP));
        }
        if count(4) != 1 {
            return Err(refuse(FORMERR));
        }
        let name_end = skip_name(packet, HEADER).ok_or(refuse(FORMERR))?;
        let end = name_end + 4;
        if end > packet.len() {
            return Err(refuse(FORMERR));
        }
        let mut query = Query {
            id,
            recursion_desired: packet[2] & 0x01 != 0,
            question: &packet[HEADER..end],
            qtype: u16::from_be_bytes([packet[name_end], packet[name_end + 1]]),
            qclass: u16::from_be_bytes([packet[name_end + 2], packet[name_end + 3]]),
            edns: None,
        };
        // Answer and authority records have no place in a query but are skipped like
        // additional ones; an OPT record among the latter gives the EDNS size.
        let mut at = end;
        let records = count(6) as usize + count(8) as usize + count(10) as usize;
        for _ in 0..records {
            let fixed = skip_name(packet, at).ok_or(refuse(FORMERR))?;
            let rdata = fixed + 10;
            if rdata > packet.len() {
                return Err(refuse(FORMERR));
            }
            let field = |i: usize| u16::from_be_bytes([packet[fixed + i], packet[fixed + i + 1]]);
            if field(0) == TYPE_OPT {
                query.edns = Some((field(2), packet[fixed + 5]));
            }
            at = rdata + field(8) as usize;
            if at > packet.len() {
                return Err(refuse(FORMERR));
            }
        }
        Ok(query)
    }

    /// The queried name in lower case, without the final dot, in `buf`; None when it is
    /// no name of ours to look up (a label with a dot or a byte that is not printable
    /// ASCII, or a compressed name).
    pub fn name<'b>(&self, buf: &'b mut [u8; 256]) -> Option<&'b str> {
        let mut len = 0;
        let mut at = 0;
        loop {
            let label = *self.question.get(at)? as usize;
            if label == 0 {
                break;
            }
            if label > 63 {
                return None;
            }
            if len > 0 {
                buf[len] = b'.';
                len += 1;
            }
            let bytes = self.question.get(at + 1..at + 1 + label)?;
            if len + label >= buf.len() || bytes.iter().any(|b| !b.is_ascii_graphic() || *b == b'.')
            {
                return None;
            }
            for (to, from) in buf[len..len + label].iter_mut().zip(bytes) {
                *to = from.to_ascii_lowercase();
            }
            len += label;
            at += 1 + label;
        }
        std::str::from_utf8(&buf[..len]).ok()
    }

    /// The most an answer over UDP may hold.
    pub fn udp_limit(&self) -> usize {
        self.edns.map_or(CLASSIC_UDP, |(size, _)| {
            (size.min(EDNS_UDP) as usize).max(CLASSIC_UDP)
        })
    }

    /// Writes the answer for `lookup` (a cluster name's) into `out`, at most `limit`
    /// bytes: records that do not fit are left out and the answer marked truncated, so
    /// the client asks again over TCP.
    pub fn answer(&self, lookup: &Lookup, ttl: u32, limit: usize, out: &mut Vec<u8>) {
        if self.edns.is_some_and(|(_, version)| version != 0) {
            return self.error(BADVERS, out);
        }
        self.header(out, NOERROR);
        let room = limit - if self.edns.is_some() { OPT_LEN } else { 0 };
        let records = match lookup {
            Lookup::Addresses(ips) => fill(out, room, ttl, TYPE_A, ips.iter(), |out, ip| {
                out.extend_from_slice(&ip.octets());
            }),
            Lookup::Names(targets) => fill(out, room, ttl, TYPE_PTR, targets.iter(), |out, t| {
                write_name(out, t);
            }),
            Lookup::NoData | Lookup::Unknown => (0, true),
        };
        let (count, all_fit) = records;
        out[6..8].copy_from_slice(&count.to_be_bytes());
        if !all_fit {
            out[2] |= 0x02;
        }
        if self.edns.is_some() {
            Self::opt(out, NOERROR);
        }
    }

    /// Writes an answer that is only `rcode` into `out`.
    pub fn error(&self, rcode: u8, out: &mut Vec<u8>) {
        self.header(out, rcode);
        if self.edns.is_some() {
            Self::opt(out, rcode);
        }
    }

    /// The header and question of an answer, no records yet; authoritative, recursion
    /// available; the low bits of `rcode` (the rest goes in the OPT record).
    fn header(&self, out: &mut Vec<u8>, rcode: u8) {
        out.clear();
        out.extend_from_slice(&self.id.to_be_bytes());
        out.push(0x80 | 0x04 | u8::from(self.recursion_desired));
        out.push(0x80 | (rcode & 0x0f));
        out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, u8::from(self.edns.is_some())]);
        out.extend_from_slice(self.question);
    }

    /// This resolver's OPT record, carrying the upper bits of `rcode`.
    fn opt(out: &mut Vec<u8>, rcode: u8) {
        out.push(0);
        out.extend_from_slice(&TYPE_OPT.to_be_bytes());
        out.extend_from_slice(&EDNS_UDP.to_be_bytes());
        out.extend_from_slice(&[rcode >> 4, 0, 0, 0, 0, 0]);
    }
}

/// Appends one record per item (the question's name, by a pointer to it) while they fit
/// in `room`: how many, and whether all did.
fn fill<T>(
    out: &mut Vec<u8>,
    room: usize,
    ttl: u32,
    rtype: u16,
    items: impl Iterator<Item = T>,
    rdata: impl Fn(&mut Vec<u8>, T),
) -> (u16, bool) {
    let mut records = 0;
    for item in items {
        let start = out.len();
        out.extend_from_slice(&[0xc0, HEADER as u8]);
        out.extend_from_slice(&rtype.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&ttl.to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        rdata(out, item);
        if out.len() > room {
            out.truncate(start);
            return (records, false);
        }
        let len = (out.len() - start - 12) as u16;
        out[start + 10..start + 12].copy_from_slice(&len.to_be_bytes());
        records += 1;
    }
    (records, true)
}

const OPT_LEN: usize = 11;

/// An answer that is only `rcode`, for a query that could not be read.
pub fn refusal(id: u16, rcode: u8, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&[0x80, 0x80 | rcode, 0, 0, 0, 0, 0, 0, 0, 0]);
}

/// Where the (uncompressed) name starting at `at` ends.
fn skip_name(packet: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let label = *packet.get(at)? as usize;
        match label {
            0 => return Some(at + 1),
            1..=63 => at += 1 + label,
            // A compression pointer ends the name; other label types are not used.
            _ if label & 0xc0 == 0xc0 => return (at + 2 <= packet.len()).then_some(at + 2),
            _ => return None,
        }
        if at > packet.len() {
            return None;
        }
    }
}

/// A dotted name ("web.1.abc.") in wire form.
fn write_name(out: &mut Vec<u8>, name: &str) {
    for label in name.split('.').filter(|l| !l.is_empty()) {
        out.push(label.len().min(63) as u8);
        out.extend_from_slice(&label.as_bytes()[..label.len().min(63)]);
    }
    out.push(0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query as HQuery, ResponseCode};
    use hickory_proto::rr::{Name, RData, RecordType};
    use hickory_proto::serialize::binary::BinDecodable;
    use std::borrow::Cow;
    use std::net::Ipv4Addr;
    use std::str::FromStr;

    /// The address of an A record's rdata.
    fn ipv4(rdata: &[u8]) -> Ipv4Addr {
        Ipv4Addr::new(rdata[0], rdata[1], rdata[2], rdata[3])
    }

    fn query(name: &str, rtype: RecordType, edns: Option<u16>) -> Vec<u8> {
        let mut m = Message::query();
        m.metadata.id = 4242;
        m.metadata.recursion_desired = true;
        m.add_query(HQuery::query(Name::from_str(name).unwrap(), rtype));
        if let Some(size) = edns {
            let mut e = Edns::new();
            e.set_max_payload(size);
            m.set_edns(e);
        }
        m.to_vec().unwrap()
    }

    fn addresses(n: u8) -> Lookup<'static> {
        Lookup::Addresses(Cow::Owned(
            (1..=n).map(|i| Ipv4Addr::new(10, 0, 1, i)).collect(),
        ))
    }

    fn answer(packet: &[u8], lookup: &Lookup, limit: usize) -> Message {
        let q = Query::parse(packet).unwrap();
        let mut out = Vec::new();
        q.answer(lookup, 600, limit, &mut out);
        Message::from_bytes(&out).expect("a valid DNS message")
    }

    #[test]
    fn a_query_is_read_with_its_name_in_lower_case() {
        let packet = query("Tasks.WEB.", RecordType::A, Some(4096));
        let q = Query::parse(&packet).unwrap();
        assert_eq!((q.id, q.qtype, q.qclass), (4242, TYPE_A, CLASS_IN));
        let mut buf = [0; 256];
        assert_eq!(q.name(&mut buf), Some("tasks.web"));
        assert_eq!(q.udp_limit(), EDNS_UDP as usize);
        let plain = query("web.", RecordType::A, None);
        assert_eq!(Query::parse(&plain).unwrap().udp_limit(), CLASSIC_UDP);
        let root = query(".", RecordType::A, None);
        assert_eq!(Query::parse(&root).unwrap().name(&mut buf), Some(""));
    }

    #[test]
    fn answers_are_valid_messages_hickory_reads_back() {
        let packet = query("web.", RecordType::A, None);
        let m = answer(&packet, &addresses(3), CLASSIC_UDP);
        assert_eq!(m.metadata.id, 4242);
        assert_eq!(m.metadata.message_type, MessageType::Response);
        assert!(m.metadata.authoritative && m.metadata.recursion_available);
        assert!(m.metadata.recursion_desired && !m.metadata.truncation);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert_eq!(m.queries[0].name().to_string(), "web.");
        let ips: Vec<Ipv4Addr> = m
            .answers
            .iter()
            .map(|r| match &r.data {
                RData::A(a) => a.0,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            ips,
            (1..=3)
                .map(|i| Ipv4Addr::new(10, 0, 1, i))
                .collect::<Vec<_>>()
        );
        assert!(
            m.answers
                .iter()
                .all(|r| r.ttl == 600 && r.name.to_string() == "web.")
        );

        let ptr = query("2.1.0.10.in-addr.arpa.", RecordType::PTR, Some(1232));
        let names = Lookup::Names(Cow::Owned(vec!["web.1.abc.".into()]));
        let m = answer(&ptr, &names, 1232);
        match &m.answers[0].data {
            RData::PTR(p) => assert_eq!(p.0.to_string(), "web.1.abc."),
            other => panic!("{other:?}"),
        }
        assert_eq!(m.edns.as_ref().map(Edns::max_payload), Some(EDNS_UDP));

        let m = answer(&packet, &Lookup::NoData, CLASSIC_UDP);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.answers.is_empty());
    }

    #[test]
    fn an_answer_too_big_for_udp_is_truncated_for_tcp() {
        let packet = query("tasks.web.", RecordType::A, None);
        let many = addresses(100);
        let m = answer(&packet, &many, CLASSIC_UDP);
        assert!(m.metadata.truncation);
        assert!(!m.answers.is_empty() && m.answers.len() < 100);
        let q = Query::parse(&packet).unwrap();
        let mut out = Vec::new();
        q.answer(&many, 600, CLASSIC_UDP, &mut out);
        assert!(out.len() <= CLASSIC_UDP);
        let m = answer(&packet, &many, TCP_MAX);
        assert!(!m.metadata.truncation);
        assert_eq!(m.answers.len(), 100);
        let kept = Message::from_bytes(&out).unwrap().answers.len();
        assert_eq!(
            ipv4(&out[out.len() - 4..]),
            Ipv4Addr::new(10, 0, 1, kept as u8),
            "the first records are kept"
        );
    }

    #[test]
    fn bad_queries_are_refused_with_the_right_code() {
        assert_eq!(Query::parse(&[1, 2, 3]), Err(Refused::Dropped));
        let mut response = query("web.", RecordType::A, None);
        response[2] |= 0x80;
        assert_eq!(Query::parse(&response), Err(Refused::Dropped));
        let mut status = Message::query();
        status.metadata.id = 7;
        status.metadata.op_code = OpCode::Status;
        status.add_query(HQuery::query(
            Name::from_str("web.").unwrap(),
            RecordType::A,
        ));
        assert_eq!(
            Query::parse(&status.to_vec().unwrap()),
            Err(Refused::Answer {
                id: 7,
                rcode: NOTIMP
            })
        );
        let packet = query("web.", RecordType::A, None);
        assert_eq!(
            Query::parse(&packet[..packet.len() - 2]),
            Err(Refused::Answer {
                id: 4242,
                rcode: FORMERR
            })
        );
        let mut no_question = packet.clone();
        no_question[5] = 0;
        assert_eq!(
            Query::parse(&no_question),
            Err(Refused::Answer {
                id: 4242,
                rcode: FORMERR
            })
        );
        let mut out = Vec::new();
        refusal(9, FORMERR, &mut out);
        let m = Message::from_bytes(&out).unwrap();
        assert_eq!(
            (m.metadata.id, m.metadata.response_code),
            (9, ResponseCode::FormErr)
        );
        let mut buf = [0; 256];
        let odd = query("a\\.b.web.", RecordType::A, None);
        assert_eq!(
            Query::parse(&odd).unwrap().name(&mut buf),
            None,
            "a dot inside a label"
        );
    }

    #[test]
    fn an_unknown_edns_version_gets_badvers() {
        let mut packet = query("web.", RecordType::A, Some(1232));
        // The OPT record's version byte: the last record's TTL, second byte.
        let at = packet.len() - 2 - 4 + 1;
        packet[at] = 1;
        let m = answer(&packet, &addresses(1), CLASSIC_UDP);
        // 16 is BADVERS in an OPT record (BADSIG to hickory, the same number).
        assert_eq!(u16::from(m.metadata.response_code), u16::from(BADVERS));
        assert!(m.answers.is_empty());
    }
}
