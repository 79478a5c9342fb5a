//! Netlink dumps read straight off a socket of their own.
//!
//! rtnetlink's connection hands every message of a dump through a channel and a
//! stream poll; with 10 000 routes that per-message cost was more than the kernel's
//! own (the steady-state pass of issue 6). Here one `recv` takes a whole datagram
//! (up to 32 KiB of messages) and they are parsed in place, so a dump costs what the
//! kernel takes to produce it plus the parse.
//!
//! The socket has NETLINK_GET_STRICT_CHK set, so the kernel filters dumps by the
//! header's table, protocol and interface instead of sending everything.

use std::io;

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_MULTIPART, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR,
    NLMSG_NOOP, NLMSG_OVERRUN, NetlinkBuffer, NetlinkHeader, NetlinkMessage,
};
use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::sys::{AsyncSocket, AsyncSocketExt, TokioSocket, protocols::NETLINK_ROUTE};

/// A socket for dumps, one at a time.
pub struct Dumper {
    socket: TokioSocket,
    sequence: u32,
    /// A dump was started and not read to its end (its future was dropped): the
    /// kernel would refuse the next one with EBUSY, so the socket is replaced first.
    unfinished: bool,
}

impl Dumper {
    /// Open a strict-checking socket in the calling thread's network namespace.
    /// Needs a tokio runtime.
    pub fn open() -> io::Result<Dumper> {
        let mut socket = TokioSocket::new(NETLINK_ROUTE)?;
        socket.socket_mut().bind_auto()?;
        socket.socket_mut().set_netlink_get_strict_chk(true)?;
        Ok(Dumper {
            socket,
            sequence: 0,
            unfinished: false,
        })
    }

    /// Dump what `request` asks for, handing each message's type and payload (the
    /// bytes after the netlink header) to `each`. Ok(false) when the kernel flagged
    /// the dump as interrupted (the table changed meanwhile): the caller redoes it.
    pub async fn dump(
        &mut self,
        request: RouteNetlinkMessage,
        mut each: impl FnMut(u16, &[u8]),
    ) -> io::Result<bool> {
        if self.unfinished {
            *self = Dumper::open()?;
        }
        self.sequence = self.sequence.wrapping_add(1);
        let sequence = self.sequence;
        let mut message = NetlinkMessage::new(NetlinkHeader::default(), request.into());
        message.header.flags = NLM_F_REQUEST | NLM_F_DUMP;
        message.header.sequence_number = sequence;
        message.finalize();
        let mut bytes = vec![0; message.buffer_len()];
        message.serialize(&mut bytes);
        self.unfinished = true;
        self.socket.send(&bytes).await?;

        let mut consistent = true;
        loop {
            let (datagram, _) = self.socket.recv_from_full().await?;
            let mut rest = datagram.as_slice();
            while !rest.is_empty() {
                let buffer = NetlinkBuffer::new_checked(rest).map_err(invalid)?;
                let length = buffer.length() as usize;
                // A message of an earlier, abandoned request: not ours to read.
                if buffer.sequence_number() == sequence {
                    if buffer.flags() & NLM_F_DUMP_INTR != 0 {
                        consistent = false;
                    }
                    match buffer.message_type() {
                        NLMSG_DONE => {
                            self.unfinished = false;
                            // A dump that fails after it started ends with NLMSG_DONE
                            // carrying the negative errno.
                            let code = errno_at(buffer.payload());
                            return match code {
                                code if code < 0 => Err(io::Error::from_raw_os_error(-code)),
                                _ => Ok(consistent),
                            };
                        }
                        NLMSG_ERROR => {
                            self.unfinished = false;
                            let code = errno_at(buffer.payload());
                            return Err(if code < 0 {
                                io::Error::from_raw_os_error(-code)
                            } else {
                                invalid("an ACK where a dump was expected")
                            });
                        }
                        NLMSG_OVERRUN => consistent = false,
                        NLMSG_NOOP => {}
                        kind => each(kind, buffer.payload()),
                    }
                    if buffer.flags() & NLM_F_MULTIPART == 0 {
                        // A lone answer (no NLMSG_DONE follows).
                        self.unfinished = false;
                        return Ok(consistent);
                    }
                }
                // Messages are 4-byte aligned within a datagram.
                let aligned = (length + 3) & !3;
                rest = rest.get(aligned..).unwrap_or_default();
            }
        }
    }
}

/// The i32 errno that NLMSG_DONE and NLMSG_ERROR start with (0 when absent).
fn errno_at(payload: &[u8]) -> i32 {
    payload
        .get(..4)
        .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        .unwrap_or(0)
}

fn invalid(e: impl ToString) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("malformed netlink dump: {}", e.to_string()),
    )
}
