//! The body of an accepted response: streamed whole into the part, fetched in `--split`
//! pieces, or into the gaps of a sparse part that an earlier split left.

use super::*;

impl Fetcher<'_> {
    /// Takes an accepted response's body into the part file, over one connection or (a whole
    /// body from the start, `--split`) several. `Err` is a failure before any byte is read.
    pub(super) fn receive(
        &self,
        url: &Url,
        t: &mut Transfer,
        response: Response,
        from: u64,
        counter: &AtomicU64,
        on_start: &mut dyn FnMut(Notice<'_>),
    ) -> Result<Result<(), StreamError>, Failure> {
        if let (Some(max), Some(total)) = (self.settings.max_filesize, t.total) {
            if total > max {
                let total = Some(total);
                return Err(Failure::new(FailureKind::TooLarge { max, total }));
            }
        }
        self.prepare_part(&response, t)?;
        on_started(t, on_start);
        if t.file.is_none() {
            return Err(Failure::new(FailureKind::Internal("no part file")));
        }
        let ranges = if from == 0 && !t.one_stream {
            split::plan(
                self.split,
                url,
                &response,
                t.total,
                t.proof,
                &mut t.split_fell_back,
            )
        } else {
            None
        };
        Ok(match ranges {
            Some(ranges) => self.stream_split(url, t, response, &ranges, counter),
            None => self.stream_whole(t, response, counter),
        })
    }

    /// What the pieces of `t`'s part share; `None` if the part is not open.
    fn pieces<'a>(
        &'a self,
        url: &'a Url,
        t: &'a Transfer,
        counter: &'a AtomicU64,
    ) -> Option<split::Pieces<'a>> {
        Some(split::Pieces {
            client: self.client,
            asked: url,
            file: t.file.as_ref()?,
            counter,
            cancel: self.cancel,
            chunk: self.settings.chunk,
            rate: self.rate,
            proof: t.proof,
            log: t.pieces_log.as_ref(),
        })
    }

    /// `--split`: the pieces fill the part in place.
    pub(super) fn stream_split(
        &self,
        url: &Url,
        t: &mut Transfer,
        response: Response,
        ranges: &[split::Range],
        counter: &AtomicU64,
    ) -> Result<(), StreamError> {
        // The pieces preallocate the part to full size and fill it out of order. The sidecar
        // says so first (sparse, nothing done yet): a process that dies meanwhile (Ctrl-C past
        // the grace, a kill) leaves a part the next `-c` recognises as its own, and holes are
        // never taken for data. No sidecar at all if that one cannot be written.
        if let Some(meta) = t.meta.as_mut() {
            meta.ranges = Some(Vec::new());
        }
        if !t.rewrite_meta() {
            t.withdraw_meta();
        }
        if let Some(v) = t.verify.as_mut() {
            v.forget();
        }
        let Some(pieces) = self.pieces(url, t, counter) else {
            return Err(StreamError::Write(io::Error::other("no part file")));
        };
        let known = t.meta.clone().unwrap_or_default();
        let mut done = Vec::new();
        let r = split::run(&pieces, response, ranges, &known, &mut done);
        t.record_ranges(done);
        r
    }

    /// A sparse part (`--split` pieces, of this run or an earlier one): fetches only the ranges
    /// it lacks, checked against the response its bytes came from, over `--split` connections
    /// (one without it).
    pub(super) fn attempt_sparse(
        &self,
        url: &Url,
        t: &mut Transfer,
        counter: &AtomicU64,
        on_start: &mut dyn FnMut(Notice<'_>),
        bytes: &mut u64,
    ) -> Attempt {
        let Some(known) = t.meta.clone() else {
            return Attempt::Fail(Failure::new(FailureKind::Internal("no sidecar")));
        };
        let total = known.total.unwrap_or(0);
        if let Some(max) = self.settings.max_filesize.filter(|&max| total > max) {
            let total = Some(total);
            return Attempt::Fail(Failure::new(FailureKind::TooLarge { max, total }));
        }
        t.total = Some(total);
        on_started(t, on_start);
        if self.settings.trace {
            t.pieces_log = Some(std::sync::Mutex::new(Vec::new()));
        }
        let Some(pieces) = self.pieces(url, t, counter) else {
            return Attempt::Fail(Failure::new(FailureKind::Internal("no part file")));
        };
        let mut done = known.ranges.clone().unwrap_or_default();
        let before = t.have;
        let r = split::fill_gaps(&pieces, &known, &mut done, self.split.pieces.max(1));
        t.record_ranges(done);
        *bytes += t.have.saturating_sub(before);
        self.settle(t, r, 206)
    }

    /// One connection: reads stay `--chunk-size` (8 KiB by default); writes of a large body are
    /// gathered into up to [`WRITE_BEHIND`] bytes, from data already received, in the read
    /// buffer itself, or straight from the transport's buffer when that holds a read's worth or
    /// more (see [`stream_body`]): the part holds every byte counted in `t.have`
    /// whenever a retry, a resume or someone watching looks.
    pub(super) fn stream_whole(
        &self,
        t: &mut Transfer,
        mut response: Response,
        counter: &AtomicU64,
    ) -> Result<(), StreamError> {
        let Some(file) = t.file.as_mut() else {
            return Err(StreamError::Write(io::Error::other("no part file")));
        };
        let large = t.total.is_none_or(|total| total > SMALL_BODY);
        let chunk = self.settings.chunk.max(1);
        let size = if large {
            chunk.max(WRITE_BEHIND)
        } else {
            chunk
        };
        let size = buffer_for(size, t.total.map(|total| total.saturating_sub(t.have)));
        let mut response = Throttled {
            inner: &mut response,
            limit: self.rate,
            cancel: self.cancel,
        };
        let mut buf = vec![0; size];
        // A small body has no sidecar yet (see [`SMALL_BODY`]): it gets one before its first
        // wait on the network, unless it has all arrived by then.
        let total = t.total;
        let (meta, part) = (t.meta.as_ref(), t.part.as_deref());
        let (owned, saved) = (&mut t.meta_owned, &mut t.meta_saved);
        let mut before_wait = |written: u64| {
            if total.is_none_or(|total| written < total) {
                part::save_sidecar(meta, part, owned, saved);
            }
            false
        };
        let mut stream = |out: &mut dyn io::Write, have: &mut u64| {
            let r = stream_body(
                &mut response,
                &mut &mut *out,
                &mut buf,
                chunk,
                counter,
                self.cancel,
                have,
                self.settings.max_filesize,
                &mut before_wait,
            );
            let clean = !matches!(r, Err(StreamError::Write(_)));
            (r, clean)
        };
        match (t.verify.as_mut(), t.part.as_deref()) {
            (Some(v), Some(part)) => v.streaming(part, file, &mut t.have, stream),
            _ => stream(file, &mut t.have).0,
        }
    }
}
