//! Netlink dumps read straight off a socket of their own.
//!
//! rtnetlink's connection hands every message of a dump through a channel and a
//! stream poll; with 10 000 routes that per-message cost was more than the kernel's
//! own (the steady-state pass of issue 6). Here one `recv` takes a whole datagram
//! and its messages are parsed in place, so a dump costs what the kernel takes to
//! produce it plus the parse.
//!
//! The receive buffer sets the datagram size. The kernel sizes each dump datagram by
//! the largest `recv` the socket has seen (capped near 32 KiB), so a reader that
//! peeks for the size and then reads exactly that (netlink-sys's `recv_from_full`)
//! keeps the kernel at one page per datagram: eight times the rounds of the kernel's
//! dump walk and of syscalls for a large table. iproute2 reads with at least 32 KiB
//! for the same reason; so does this.
//!
//! The socket has NETLINK_GET_STRICT_CHK set, so the kernel filters dumps by the
//! header's table, protocol and interface instead of sending everything.

use std::io;

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_MULTIPART, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR,
    NLMSG_NOOP, NLMSG_OVERRUN, NetlinkBuffer, NetlinkHeader, NetlinkMessage,
};
use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::sys::{Socket, protocols::NETLINK_ROUTE};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// The receive size that lets the kernel fill its largest dump datagrams
/// (SKB_WITH_OVERHEAD(32768) is just below it).
pub const DATAGRAM_SIZE: usize = 32 * 1024;

/// A socket for dumps, one at a time.
pub struct Dumper {
    socket: AsyncFd<Socket>,
    sequence: u32,
    /// A dump was started and not read to its end (its future was dropped, or a
    /// datagram was cut short): the kernel would refuse the next one with EBUSY, so
    /// the socket is replaced first.
    unfinished: bool,
    /// Bytes asked of each `recv`. Grows when a datagram did not fit (a link message
    /// above 32 KiB, e.g. a NIC with many SR-IOV VFs, makes the kernel allocate more).
    receive_size: usize,
}

impl Dumper {
    /// Open a strict-checking socket in the calling thread's network namespace.
    /// Needs a tokio runtime.
    pub fn open() -> io::Result<Dumper> {
        Dumper::with_receive_size(DATAGRAM_SIZE)
    }

    /// `open` with another starting receive size (tests use a small one to see a
    /// datagram that does not fit).
    pub fn with_receive_size(receive_size: usize) -> io::Result<Dumper> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.set_netlink_get_strict_chk(true)?;
        socket.set_non_blocking(true)?;
        // SAFETY: the Socket owns its fd and closes it only when dropped, which is
        // when the AsyncFd that holds it is dropped.
        let socket = unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE) }
            .map_err(|e| e.into_parts().1)?;
        Ok(Dumper {
            socket,
            sequence: 0,
            unfinished: false,
            receive_size,
        })
    }

    /// Bytes asked of each `recv` now.
    pub fn receive_size(&self) -> usize {
        self.receive_size
    }

    /// Dump what `request` asks for, handing each message's type and payload (the
    /// bytes after the netlink header) to `each`. Ok(false) when the dump is not
    /// whole, and the caller redoes it: the kernel flagged it as interrupted (the
    /// table changed meanwhile), or a datagram did not fit the receive buffer (which
    /// has grown to fit it by then).
    pub async fn dump(
        &mut self,
        request: RouteNetlinkMessage,
        mut each: impl FnMut(u16, &[u8]),
    ) -> io::Result<bool> {
        if self.unfinished {
            *self = Dumper::with_receive_size(self.receive_size)?;
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
        // The kernel queues the dump's first datagram before send returns: a netlink
        // send to the kernel never blocks.
        self.socket.get_ref().send(&bytes, 0)?;

        let mut datagram = Vec::with_capacity(self.receive_size);
        let mut consistent = true;
        loop {
            datagram.clear();
            // MSG_TRUNC: the kernel answers with the datagram's whole length, so one
            // that was cut short is known.
            let length = self
                .socket
                .async_io(Interest::READABLE, |socket| {
                    socket.recv(&mut datagram, libc::MSG_TRUNC)
                })
                .await?;
            if length > datagram.len() {
                // The rest of this datagram is gone: redo the dump with room for it.
                // `unfinished` stays set, so the redo starts on a fresh socket.
                self.receive_size = length.next_multiple_of(4096);
                return Ok(false);
            }
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
