//! The per-digest part of `/metrics`, kept as independently deflated segments so that a new
//! snapshot costs only the blocks of targets that changed.
//!
//! Targets are cut into blocks of [`BLOCK`] in snapshot order; each block is rendered into one
//! string per family and each string deflated on its own (fresh window, ending with a sync flush
//! on a byte boundary, not final). Raw deflate segments made that way can be concatenated into one
//! stream, and CRC-32s combine, so a gzip body is the header, the cached segments in family
//! order, and a final segment for the per-scrape tail. A block is reused when the new snapshot
//! holds the very same `Arc<TargetState>`s at its positions: the scheduler replaces a target's
//! `Arc` whenever anything about it changes, and never mutates one in place.

use std::sync::Arc;

use bytes::Bytes;
use flate2::{Compress, CompressError, Compression, FlushCompress, Status};

use crate::exposition::negotiate::Format;
use crate::exposition::render::{FAMILIES, header, render_block};
use crate::poll::store::{Snapshot, TargetState};

/// Targets per block: small enough that one changed digest re-renders about 400 KB, large enough
/// that segments compress well and a 10 000-digest body is a few hundred chunks.
pub(crate) const BLOCK: usize = 128;

const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];

/// Deflated bytes with the CRC-32 and length of what they encode.
#[derive(Clone, Debug, Default)]
struct Segment {
    data: Bytes,
    crc: crc32fast::Hasher,
}

/// One raw-deflate compressor, reset for every segment so its state is allocated once.
#[derive(Debug)]
pub(crate) struct Deflater {
    compress: Compress,
    scratch: Vec<u8>,
}

impl Default for Deflater {
    fn default() -> Self {
        Deflater {
            compress: Compress::new(Compression::fast(), false),
            scratch: Vec::with_capacity(64 * 1024),
        }
    }
}

impl Deflater {
    /// Deflates all of `input` into `self.scratch` from an empty window.
    fn run(&mut self, mut input: &[u8], flush: FlushCompress) -> Result<(), CompressError> {
        self.compress.reset();
        self.scratch.clear();
        let finish = matches!(flush, FlushCompress::Finish);
        loop {
            if self.scratch.capacity() - self.scratch.len() < 4096 {
                self.scratch.reserve((input.len() / 4).max(16 * 1024));
            }
            let before = self.compress.total_in();
            let status = self
                .compress
                .compress_vec(input, &mut self.scratch, flush)?;
            let used = usize::try_from(self.compress.total_in() - before).unwrap_or(input.len());
            input = input.get(used..).unwrap_or_default();
            // A flush is complete once the compressor stops filling the output it was given.
            let drained = input.is_empty() && self.scratch.len() < self.scratch.capacity();
            match status {
                Status::StreamEnd => return Ok(()),
                Status::Ok | Status::BufError if drained && !finish => return Ok(()),
                Status::Ok | Status::BufError => {}
            }
        }
    }

    /// `plain` as non-final deflate blocks that end on a byte boundary.
    fn segment(&mut self, plain: &str) -> Result<Segment, CompressError> {
        if plain.is_empty() {
            return Ok(Segment::default());
        }
        self.run(plain.as_bytes(), FlushCompress::Sync)?;
        let mut crc = crc32fast::Hasher::new();
        crc.update(plain.as_bytes());
        // Copied out at its exact size: the scratch buffer's slack must not stay cached.
        Ok(Segment {
            data: Bytes::copy_from_slice(&self.scratch),
            crc,
        })
    }

    /// `plain` as the final deflate blocks of a stream.
    fn finish(&mut self, plain: &[u8]) -> Result<Vec<u8>, CompressError> {
        self.run(plain, FlushCompress::Finish)?;
        Ok(self.scratch.clone())
    }
}

/// The cached per-digest part of one snapshot version, ready to be followed by a tail.
#[derive(Debug)]
pub(crate) struct Prepared {
    /// The snapshot version these chunks encode.
    pub(crate) version: u64,
    chunks: Vec<Bytes>,
    crc: crc32fast::Hasher,
}

impl Prepared {
    /// The whole gzip member: the cached chunks, then `tail` deflated as the final blocks, then
    /// the CRC-32 and length of everything.
    pub(crate) fn body(
        &self,
        tail: &[u8],
        deflater: &mut Deflater,
    ) -> Result<Vec<Bytes>, CompressError> {
        let mut end = deflater.finish(tail)?;
        let mut crc = self.crc.clone();
        crc.update(tail);
        let len = crc.total_len();
        end.extend_from_slice(&crc.finalize().to_le_bytes());
        // ISIZE is the length modulo 2^32.
        end.extend_from_slice(&(len as u32).to_le_bytes());
        let mut chunks = Vec::with_capacity(self.chunks.len() + 1);
        chunks.extend(self.chunks.iter().cloned());
        chunks.push(Bytes::from(end));
        Ok(chunks)
    }
}

/// Deflated segments per block and family for one format, and the snapshot they came from.
#[derive(Debug)]
pub(crate) struct GzipCache {
    format: Format,
    headers: Vec<Segment>,
    rendered_from: Option<Arc<Snapshot>>,
    blocks: Vec<Vec<Segment>>,
    prepared: Option<Arc<Prepared>>,
}

/// True when `prev` holds exactly the same targets at block `b` as `cur` does.
fn same_block(prev: &Snapshot, cur: &[Arc<TargetState>], b: usize) -> bool {
    let start = b * BLOCK;
    let end = prev.targets.len().min(start + BLOCK);
    prev.targets.get(start..end).is_some_and(|old| {
        old.len() == cur.len() && old.iter().zip(cur).all(|(a, b)| Arc::ptr_eq(a, b))
    })
}

impl GzipCache {
    /// An empty cache for `format`.
    pub(crate) fn new(format: Format, deflater: &mut Deflater) -> Result<Self, CompressError> {
        let mut headers = Vec::with_capacity(FAMILIES);
        let mut s = String::new();
        for f in 0..FAMILIES {
            s.clear();
            header(f, format, &mut s);
            headers.push(deflater.segment(&s)?);
        }
        Ok(GzipCache {
            format,
            headers,
            rendered_from: None,
            blocks: Vec::new(),
            prepared: None,
        })
    }

    /// Drops the cached segments; the next [`GzipCache::prepare`] renders everything again.
    pub(crate) fn clear(&mut self) {
        self.rendered_from = None;
        self.blocks = Vec::new();
        self.prepared = None;
    }

    /// The per-digest part for `snapshot`, re-rendering only blocks whose targets changed.
    pub(crate) fn prepare(
        &mut self,
        snapshot: &Arc<Snapshot>,
        deflater: &mut Deflater,
        scratch: &mut [String; FAMILIES],
    ) -> Result<Arc<Prepared>, CompressError> {
        if let Some(p) = &self.prepared
            && p.version == snapshot.version
            && self
                .rendered_from
                .as_ref()
                .is_some_and(|r| Arc::ptr_eq(r, snapshot))
        {
            return Ok(Arc::clone(p));
        }
        // Taken out first: if deflating fails half-way the cache starts over instead of mixing.
        let prev = self.rendered_from.take();
        self.prepared = None;
        let old = std::mem::take(&mut self.blocks);
        let mut old = old.into_iter();
        let targets = &snapshot.targets;
        let mut blocks = Vec::with_capacity(targets.len().div_ceil(BLOCK));
        for (b, cur) in targets.chunks(BLOCK).enumerate() {
            let reused = old.next();
            if let (Some(prev), Some(segs)) = (&prev, reused)
                && same_block(prev, cur, b)
            {
                blocks.push(segs);
                continue;
            }
            render_block(cur.iter().map(|t| &**t), self.format, scratch);
            let mut segs = Vec::with_capacity(FAMILIES);
            for s in scratch.iter() {
                segs.push(deflater.segment(s)?);
            }
            blocks.push(segs);
        }
        drop(old);

        let mut chunks = Vec::with_capacity(1 + FAMILIES * (blocks.len() + 1));
        chunks.push(Bytes::from_static(&GZIP_HEADER));
        let mut crc = crc32fast::Hasher::new();
        for f in 0..FAMILIES {
            let column = std::iter::once(&self.headers[f]).chain(blocks.iter().map(|b| &b[f]));
            for seg in column.filter(|s| !s.data.is_empty()) {
                chunks.push(seg.data.clone());
                crc.combine(&seg.crc);
            }
        }
        let prepared = Arc::new(Prepared {
            version: snapshot.version,
            chunks,
            crc,
        });
        self.blocks = blocks;
        self.rendered_from = Some(Arc::clone(snapshot));
        self.prepared = Some(Arc::clone(&prepared));
        Ok(prepared)
    }
}

/// The per-digest part for `snapshot` uncompressed, as one chunk per family and block.
pub(crate) fn plain(
    snapshot: &Snapshot,
    format: Format,
    scratch: &mut [String; FAMILIES],
) -> Vec<Bytes> {
    let targets = &snapshot.targets;
    let mut grid: Vec<Vec<Bytes>> = Vec::with_capacity(targets.len().div_ceil(BLOCK));
    for cur in targets.chunks(BLOCK) {
        render_block(cur.iter().map(|t| &**t), format, scratch);
        grid.push(
            scratch
                .iter()
                .map(|s| Bytes::copy_from_slice(s.as_bytes()))
                .collect(),
        );
    }
    let mut chunks = Vec::with_capacity(FAMILIES * (grid.len() + 1));
    let mut s = String::new();
    for f in 0..FAMILIES {
        s.clear();
        header(f, format, &mut s);
        chunks.push(Bytes::copy_from_slice(s.as_bytes()));
        chunks.extend(
            grid.iter_mut()
                .map(|b| std::mem::take(&mut b[f]))
                .filter(|c| !c.is_empty()),
        );
    }
    chunks
}
