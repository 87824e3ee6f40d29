//! What a worker says to the broker, on the same connection the sessions arrive on.
//!
//! ```text
//!  'C' u32 (big-endian)   credits: how many sessions the worker may hold
//!                         unacknowledged; sent first, and again to change it
//!  'A' u32 (big-endian)   acknowledges that many more sessions, in the order sent
//! ```
//!
//! The broker keeps its copy of every session until it is acknowledged; a worker
//! that goes away first has its unacknowledged sessions sent to another worker.

use std::fmt;

/// One message from a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// The worker may hold this many unacknowledged sessions.
    Credits(u32),
    /// The next this-many sessions arrived.
    Ack(u32),
}

/// The size of every control message.
pub const CONTROL_LEN: usize = 5;

impl Control {
    /// The message's bytes.
    pub fn encode(self) -> [u8; CONTROL_LEN] {
        let (tag, n) = match self {
            Control::Credits(n) => (b'C', n),
            Control::Ack(n) => (b'A', n),
        };
        let [a, b, c, d] = n.to_be_bytes();
        [tag, a, b, c, d]
    }

    /// Decodes the messages at the front of `buf`, returning them and the bytes used.
    ///
    /// ```
    /// use handoff_broker::protocol::Control;
    /// let mut bytes = Control::Credits(8).encode().to_vec();
    /// bytes.extend_from_slice(&Control::Ack(2).encode());
    /// bytes.push(b'A'); // the start of the next one
    /// let (msgs, used) = Control::decode_all(&bytes).unwrap();
    /// assert_eq!(msgs, [Control::Credits(8), Control::Ack(2)]);
    /// assert_eq!(used, 10);
    /// ```
    ///
    /// # Errors
    /// [`BadControl`] for a tag that is neither `C` nor `A`.
    pub fn decode_all(buf: &[u8]) -> Result<(Vec<Control>, usize), BadControl> {
        let mut out = Vec::new();
        let mut used = 0;
        for chunk in buf.chunks_exact(CONTROL_LEN) {
            let n = u32::from_be_bytes([chunk[1], chunk[2], chunk[3], chunk[4]]);
            out.push(match chunk[0] {
                b'C' => Control::Credits(n),
                b'A' => Control::Ack(n),
                tag => return Err(BadControl { tag }),
            });
            used += CONTROL_LEN;
        }
        Ok((out, used))
    }
}

/// A worker sent something that is not a control message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadControl {
    /// The first byte of the bad message.
    pub tag: u8,
}

impl fmt::Display for BadControl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the worker sent a message with tag {:#04x}, neither 'C' (credits) nor 'A' (ack)",
            self.tag
        )
    }
}

impl std::error::Error for BadControl {}
