//! routed6d's one netlink socket for requests: dumps, writes and single gets, each
//! sent and its answer read straight off the socket, one exchange at a time.
//!
//! No channel or task between the caller and the kernel (as rtnetlink's connection
//! has): one `recv` takes a whole datagram and its messages are parsed in place, so a
//! dump costs what the kernel takes to produce it plus the parse, and a write is on
//! the wire when the call is made.
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
    NLM_F_ACK, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_MULTIPART, NLM_F_REQUEST, NLMSG_DONE,
    NLMSG_ERROR, NLMSG_NOOP, NLMSG_OVERRUN, NetlinkBuffer, NetlinkHeader, NetlinkMessage,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{Socket, protocols::NETLINK_ROUTE};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// The receive size that lets the kernel fill its largest dump datagrams
/// (SKB_WITH_OVERHEAD(32768) is just below it).
pub const DATAGRAM_SIZE: usize = 32 * 1024;

/// A netlink route socket for requests, one exchange at a time.
pub struct RouteSocket {
    socket: AsyncFd<Socket>,
    sequence: u32,
    /// A request's answer was not read to its end (its future was dropped, or a
    /// datagram was cut short): what is left would be read as the next answer, and a
    /// dump in progress makes the kernel refuse the next one with EBUSY, so the socket
    /// is replaced first.
    unfinished: bool,
    /// Bytes asked of each `recv`. Grows when a datagram did not fit (a link message
    /// above 32 KiB, e.g. a NIC with many SR-IOV VFs, makes the kernel allocate more).
    receive_size: usize,
}

impl RouteSocket {
    /// Open a strict-checking socket in the calling thread's network namespace.
    /// Needs a tokio runtime.
    pub fn open() -> io::Result<RouteSocket> {
        RouteSocket::with_receive_size(DATAGRAM_SIZE)
    }

    /// `open` with another starting receive size (tests use a small one to see a
    /// datagram that does not fit).
    pub fn with_receive_size(receive_size: usize) -> io::Result<RouteSocket> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.set_netlink_get_strict_chk(true)?;
        socket.set_non_blocking(true)?;
        // SAFETY: the Socket owns its fd and closes it only when dropped, which is
        // when the AsyncFd that holds it is dropped.
        let socket = unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE) }
            .map_err(|e| e.into_parts().1)?;
        Ok(RouteSocket {
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
        let mut consistent = true;
        self.exchange(request, NLM_F_DUMP, |kind, flags, payload| {
            if flags & NLM_F_DUMP_INTR != 0 {
                consistent = false;
            }
            match kind {
                // A dump that fails after it started ends with NLMSG_DONE carrying
                // the negative errno.
                NLMSG_DONE => return Step::Done(errno_result(payload).map(|()| consistent)),
                NLMSG_ERROR => {
                    return Step::Done(match errno_result(payload) {
                        Err(e) => Err(e),
                        Ok(()) => Err(invalid("an ACK where a dump was expected")),
                    });
                }
                NLMSG_OVERRUN => consistent = false,
                NLMSG_NOOP => {}
                kind => each(kind, payload),
            }
            if flags & NLM_F_MULTIPART == 0 {
                // A lone answer (no NLMSG_DONE follows).
                Step::Done(Ok(consistent))
            } else {
                Step::More
            }
        })
        .await
    }

    /// Send a request that changes the kernel (`flags`: NLM_F_CREATE, NLM_F_EXCL,
    /// NLM_F_REPLACE …) and wait for its acknowledgement: Ok, or the kernel's errno.
    pub async fn write(&mut self, request: RouteNetlinkMessage, flags: u16) -> io::Result<()> {
        let whole = self
            .exchange(request, NLM_F_ACK | flags, |kind, _, payload| match kind {
                NLMSG_ERROR => Step::Done(errno_result(payload).map(|()| true)),
                _ => Step::More,
            })
            .await?;
        if whole {
            Ok(())
        } else {
            Err(invalid("an acknowledgement larger than the receive buffer"))
        }
    }

    /// Ask for one object (a get without NLM_F_DUMP): its message type and payload
    /// to `answer`, or the kernel's errno.
    pub async fn get(
        &mut self,
        request: RouteNetlinkMessage,
        mut answer: impl FnMut(u16, &[u8]),
    ) -> io::Result<()> {
        let whole = self
            .exchange(request, 0, |kind, _, payload| match kind {
                NLMSG_ERROR => Step::Done(errno_result(payload).map(|()| true)),
                NLMSG_NOOP => Step::More,
                kind => {
                    answer(kind, payload);
                    Step::Done(Ok(true))
                }
            })
            .await?;
        if whole {
            Ok(())
        } else {
            Err(invalid("an answer larger than the receive buffer"))
        }
    }

    /// Send `request` with `flags` and read the answer's messages (those of this
    /// request only) until `step` says it is done. Ok(false) when a datagram did not
    /// fit the receive buffer (which has grown to fit it by then).
    async fn exchange(
        &mut self,
        request: RouteNetlinkMessage,
        flags: u16,
        mut step: impl FnMut(u16, u16, &[u8]) -> Step,
    ) -> io::Result<bool> {
        if self.unfinished {
            *self = RouteSocket::with_receive_size(self.receive_size)?;
        }
        self.sequence = self.sequence.wrapping_add(1);
        let sequence = self.sequence;
        let mut message = NetlinkMessage::new(NetlinkHeader::default(), request.into());
        message.header.flags = NLM_F_REQUEST | flags;
        message.header.sequence_number = sequence;
        message.finalize();
        let mut bytes = vec![0; message.buffer_len()];
        message.serialize(&mut bytes);
        self.unfinished = true;
        // The kernel handles the request (and queues its answer) before send returns:
        // a netlink send to the kernel never blocks.
        self.socket.get_ref().send(&bytes, 0)?;

        let mut datagram = Vec::with_capacity(self.receive_size);
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
                // The rest of this datagram is gone: the caller redoes the request
                // with room for it. `unfinished` stays set, so the redo starts on a
                // fresh socket.
                self.receive_size = length.next_multiple_of(4096);
                return Ok(false);
            }
            let mut rest = datagram.as_slice();
            while !rest.is_empty() {
                let buffer = NetlinkBuffer::new_checked(rest).map_err(invalid)?;
                let length = buffer.length() as usize;
                // A message of an earlier, abandoned request: not ours to read.
                if buffer.sequence_number() == sequence
                    && let Step::Done(result) =
                        step(buffer.message_type(), buffer.flags(), buffer.payload())
                {
                    self.unfinished = false;
                    return result;
                }
                // Messages are 4-byte aligned within a datagram.
                let aligned = (length + 3) & !3;
                rest = rest.get(aligned..).unwrap_or_default();
            }
        }
    }
}

/// What one message of an answer does to its exchange.
enum Step {
    More,
    /// The answer is complete: the exchange's result.
    Done(io::Result<bool>),
}

/// The errno an NLMSG_DONE or NLMSG_ERROR carries, as a result (0: success, an ACK).
fn errno_result(payload: &[u8]) -> io::Result<()> {
    match errno_at(payload) {
        code if code < 0 => Err(io::Error::from_raw_os_error(-code)),
        _ => Ok(()),
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
