//! Limits on one RPC execution (`eth_call`, `eth_estimateGas`, `eth_createAccessList`,
//! `debug_trace*`), enforced inside revm.
//!
//! A [`Budget`] holds a wall-clock deadline, and for traces a step limit and a byte budget for
//! what the tracer records. A [`Meter`] is the revm inspector that checks it: the deadline every
//! [`CLOCK_EVERY`] steps, the step and byte limits at every step. When a limit is passed it
//! stores a context error and halts the frame, which makes revm unwind every frame and end the
//! transaction with `EVMError::Custom`, so the EVM really stops, not only the HTTP answer.

use std::time::{Duration, Instant};

use revm::context_interface::context::ContextError;
use revm::context_interface::ContextTr;
use revm::inspector::Inspector;
use revm::interpreter::interpreter_types::{MemoryTr, ReturnData};
use revm::interpreter::{CallInputs, CallOutcome, CreateInputs, CreateOutcome, Interpreter};

/// Steps between two looks at the clock (`Instant::now` is cheap, but not free per opcode).
pub const CLOCK_EVERY: u64 = 1024;

/// Bytes counted for one recorded struct-logger step before its stack, memory and return data:
/// the size of revm-inspectors' `CallTraceStep`.
pub const STEP_BYTES: u64 = std::mem::size_of::<revm_inspectors::tracing::types::CallTraceStep>() as u64;

/// Bytes counted for one recorded call frame (call tracers), before its input.
const FRAME_BYTES: u64 = 512;

/// Which limit an execution passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exceeded {
    /// The wall-clock limit.
    Timeout {
        /// The limit.
        limit: Duration,
        /// Where it came from (`--rpc-call-timeout`, or the tracer's `timeout` option).
        source: &'static str,
    },
    /// The step limit of a trace (`--rpc-trace-max-steps`).
    Steps(u64),
    /// The byte budget of what a tracer records (`--rpc-trace-max-bytes`).
    Bytes(u64),
}

impl std::fmt::Display for Exceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exceeded::Timeout { limit, source } => write!(
                f,
                "execution aborted (timeout = {}): the call ran past its time limit ({source})",
                fmt_duration(*limit)
            ),
            Exceeded::Steps(n) => write!(
                f,
                "execution aborted: the trace passed the limit of {n} EVM steps (--rpc-trace-max-steps)"
            ),
            Exceeded::Bytes(n) => write!(
                f,
                "execution aborted: the trace would record more than {n} bytes (--rpc-trace-max-bytes); \
                 trace less (disable the stack, memory or return data, set a struct logger limit, or use \
                 callTracer)"
            ),
        }
    }
}

/// Formats a duration as geth does for its timeouts (`5s`, `1.5s`, `250ms`).
pub fn fmt_duration(d: Duration) -> String {
    if d.as_millis().is_multiple_of(1000) {
        format!("{}s", d.as_secs())
    } else if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

/// The limits of one execution. Cheap to copy; the clock starts when the request is accepted
/// (queueing counts against the time limit).
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    start: Instant,
    timeout: Option<(Duration, &'static str)>,
    max_steps: Option<u64>,
    max_bytes: Option<u64>,
}

impl Budget {
    /// A budget with a time limit from now (`None`: no limit), named by `source` in errors.
    pub fn new(timeout: Option<Duration>, source: &'static str) -> Self {
        Self {
            start: Instant::now(),
            timeout: timeout.map(|t| (t, source)),
            max_steps: None,
            max_bytes: None,
        }
    }

    /// A budget whose clock started at `start`.
    pub fn starting_at(start: Instant, timeout: Option<Duration>, source: &'static str) -> Self {
        Self { start, ..Self::new(timeout, source) }
    }

    /// The same budget with a shorter time limit (a tracer's `timeout` option), counted from the
    /// same start; a longer one than the server's does not extend it.
    pub fn narrowed(mut self, timeout: Duration, source: &'static str) -> Self {
        match self.timeout {
            Some((t, _)) if t <= timeout => {}
            _ => self.timeout = Some((timeout, source)),
        }
        self
    }

    /// The same budget with trace limits (`None`: unlimited).
    pub fn with_trace_limits(mut self, max_steps: Option<u64>, max_bytes: Option<u64>) -> Self {
        self.max_steps = max_steps;
        self.max_bytes = max_bytes;
        self
    }

    /// The time limit and where it came from.
    pub fn timeout(&self) -> Option<(Duration, &'static str)> {
        self.timeout
    }

    /// Whether the time limit has passed already (checked before a queued call starts).
    pub fn expired(&self) -> Option<Exceeded> {
        let (limit, source) = self.timeout?;
        (self.start.elapsed() >= limit).then_some(Exceeded::Timeout { limit, source })
    }

    /// A meter for one execution under this budget (steps and bytes counted from zero).
    pub fn meter(&self, recording: Recording) -> Meter {
        Meter { budget: *self, recording, steps: 0, bytes: 0, exceeded: None }
    }
}

/// What the tracer running next to a [`Meter`] records, so the meter can count its bytes.
#[derive(Debug, Clone, Copy, Default)]
pub enum Recording {
    /// Nothing per step or frame (plain calls, `noopTracer`, `4byteTracer`).
    #[default]
    Nothing,
    /// Every step (the struct logger), with what it copies per step.
    Steps {
        /// The stack (default on).
        stack: bool,
        /// The memory (`enableMemory`).
        memory: bool,
        /// The return data (`enableReturnData`).
        return_data: bool,
        /// The struct logger's `limit`: steps past it are not recorded.
        limit: Option<u64>,
    },
    /// Every call frame with its input (`callTracer`, `prestateTracer`, `flatCallTracer`, mux).
    Frames,
}

/// The inspector that holds an execution to its [`Budget`]. Reuse one across the transactions
/// of a block trace: steps and bytes add up.
#[derive(Debug, Clone)]
pub struct Meter {
    budget: Budget,
    recording: Recording,
    steps: u64,
    bytes: u64,
    exceeded: Option<Exceeded>,
}

impl Meter {
    /// The limit passed, if any: the execution was stopped because of it.
    pub fn exceeded(&self) -> Option<&Exceeded> {
        self.exceeded.as_ref()
    }

    /// Steps executed so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    fn check(&self) -> Option<Exceeded> {
        if let Some(max) = self.budget.max_steps {
            if self.steps > max {
                return Some(Exceeded::Steps(max));
            }
        }
        if let Some(max) = self.budget.max_bytes {
            if self.bytes > max {
                return Some(Exceeded::Bytes(max));
            }
        }
        if self.steps.is_multiple_of(CLOCK_EVERY) {
            return self.budget.expired();
        }
        None
    }

    fn stop<CTX: ContextTr>(&mut self, context: &mut CTX, why: Exceeded) {
        *context.error() = Err(ContextError::Custom(why.to_string()));
        self.exceeded = Some(why);
    }

    fn frame(&mut self, input_len: usize) {
        if matches!(self.recording, Recording::Frames) {
            self.bytes += FRAME_BYTES + input_len as u64;
        }
    }
}

impl<CTX: ContextTr> Inspector<CTX> for Meter {
    fn step(&mut self, interp: &mut Interpreter, context: &mut CTX) {
        if self.exceeded.is_some() {
            interp.halt_fatal();
            return;
        }
        self.steps += 1;
        if let Recording::Steps { stack, memory, return_data, limit } = self.recording {
            let mut n = STEP_BYTES;
            if stack {
                n += 32 * interp.stack.len() as u64;
            }
            if memory {
                n += interp.memory.size() as u64;
            }
            if return_data {
                n += interp.return_data.buffer().len() as u64;
            }
            if limit.is_none_or(|l| self.steps <= l) {
                self.bytes += n;
            }
        }
        if let Some(why) = self.check() {
            self.stop(context, why);
            interp.halt_fatal();
        }
    }

    fn call(&mut self, context: &mut CTX, inputs: &mut CallInputs) -> Option<CallOutcome> {
        self.frame(inputs.input.len());
        let _ = context;
        None
    }

    fn create(&mut self, context: &mut CTX, inputs: &mut CreateInputs) -> Option<CreateOutcome> {
        self.frame(inputs.init_code().len());
        let _ = context;
        None
    }
}

/// Parses a Go duration as geth's tracer `timeout` option takes it: a sequence of decimal
/// numbers with units `ns`, `us` (or `µs`), `ms`, `s`, `m`, `h`, e.g. `"10s"`, `"1.5s"`,
/// `"1m30s"`, `"300ms"`.
pub fn parse_go_duration(text: &str) -> Result<Duration, String> {
    let bad =
        || format!("invalid timeout {text:?}: use a Go duration such as \"10s\", \"500ms\" or \"1m30s\"");
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let number: f64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total += number * seconds;
    }
    Duration::try_from_secs_f64(total).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse_as_geth_takes_them() {
        assert_eq!(parse_go_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_go_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_go_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("300ms"), Ok(Duration::from_millis(300)));
        assert_eq!(parse_go_duration("0"), Ok(Duration::ZERO));
        for bad in ["", "10", "s", "10x", "-1s", "1.2.3s"] {
            assert!(parse_go_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_tracer_timeout_only_shortens_the_server_limit() {
        let b = Budget::new(Some(Duration::from_secs(5)), "--rpc-call-timeout");
        assert_eq!(
            b.narrowed(Duration::from_secs(1), "timeout").timeout(),
            Some((Duration::from_secs(1), "timeout"))
        );
        assert_eq!(
            b.narrowed(Duration::from_secs(10), "timeout").timeout(),
            Some((Duration::from_secs(5), "--rpc-call-timeout"))
        );
        let none = Budget::new(None, "--rpc-call-timeout");
        assert_eq!(
            none.narrowed(Duration::from_secs(10), "timeout").timeout(),
            Some((Duration::from_secs(10), "timeout"))
        );
    }

    #[test]
    fn timeouts_read_like_geth() {
        let e = Exceeded::Timeout { limit: Duration::from_secs(5), source: "--rpc-call-timeout" };
        assert!(e.to_string().starts_with("execution aborted (timeout = 5s)"), "{e}");
        assert_eq!(fmt_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(fmt_duration(Duration::from_millis(1500)), "1.5s");
    }
}
