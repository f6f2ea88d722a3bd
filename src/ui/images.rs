//! Image textures for the studio: files are decoded on background threads (full size for the
//! canvas, small for thumbnails) and turned into GPU textures only when a panel asks for them
//! this frame. Textures that were not drawn for a while are dropped, so memory follows what is on
//! screen, not the size of the dataset.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use egui::{ColorImage, TextureHandle, TextureOptions};

/// Full-resolution image or thumbnail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ImageSize {
    Full,
    Thumb,
}

type Key = (PathBuf, ImageSize);

/// What a panel gets back for an image.
pub enum ImageState<'a> {
    Loading,
    /// Texture and the file's own pixel size (thumbnails report the full size too).
    Ready(&'a TextureHandle, [u32; 2]),
    Failed(&'a str),
}

enum Slot {
    Queued,
    Ready { texture: TextureHandle, size: [u32; 2], last_used: u64 },
    Failed(String),
}

struct Decoded {
    key: Key,
    result: Result<(ColorImage, [u32; 2]), String>,
}

/// Textures kept after they were last drawn (frames).
const KEEP_FRAMES: u64 = 240;
/// At most this many full-size textures stay resident.
const MAX_FULL: usize = 48;
/// At most this many thumbnails stay resident.
const MAX_THUMBS: usize = 600;

pub struct ImageCache {
    slots: HashMap<Key, Slot>,
    jobs: SyncSender<Key>,
    done: Receiver<Decoded>,
    /// Requests that did not fit in the job channel yet.
    backlog: VecDeque<Key>,
    frame: u64,
}

impl ImageCache {
    /// Start `threads` decoder threads; `wake` is called when a decode finishes.
    pub fn new(threads: usize, wake: impl Fn() + Send + Sync + 'static) -> Self {
        let (job_tx, job_rx) = sync_channel::<Key>(256);
        let (done_tx, done_rx) = sync_channel::<Decoded>(64);
        let job_rx = Arc::new(Mutex::new(job_rx));
        let wake: Arc<dyn Fn() + Send + Sync> = Arc::new(wake);
        for i in 0..threads.max(1) {
            let (rx, tx, wake) = (job_rx.clone(), done_tx.clone(), wake.clone());
            let _ = std::thread::Builder::new().name(format!("sightline-decode-{i}")).spawn(move || loop {
                let job = match rx.lock() {
                    Ok(r) => r.recv(),
                    Err(_) => return,
                };
                let Ok(key) = job else { return };
                let result = decode(&key.0, key.1);
                if tx.send(Decoded { key, result }).is_err() {
                    return;
                }
                wake();
            });
        }
        ImageCache { slots: HashMap::new(), jobs: job_tx, done: done_rx, backlog: VecDeque::new(), frame: 0 }
    }

    /// Call once per frame before drawing: uploads finished decodes, evicts stale textures.
    pub fn begin_frame(&mut self, ctx: &egui::Context) {
        self.frame += 1;
        while let Some(key) = self.backlog.pop_front() {
            match self.jobs.try_send(key) {
                Ok(()) => {}
                Err(TrySendError::Full(k)) => {
                    self.backlog.push_front(k);
                    break;
                }
                Err(TrySendError::Disconnected(_)) => break,
            }
        }
        while let Ok(d) = self.done.try_recv() {
            let slot = match d.result {
                Ok((img, size)) => {
                    let name = format!("{}:{:?}", d.key.0.display(), d.key.1);
                    // Zoomed in, show the model's pixels as pixels; zoomed out, smooth.
                    let options = TextureOptions { magnification: egui::TextureFilter::Nearest, ..TextureOptions::LINEAR };
                    let texture = ctx.load_texture(name, img, options);
                    Slot::Ready { texture, size, last_used: self.frame }
                }
                Err(e) => Slot::Failed(e),
            };
            // Only keep it if somebody still wants it (it may have been evicted meanwhile).
            if self.slots.contains_key(&d.key) {
                self.slots.insert(d.key, slot);
            }
        }
        self.evict();
    }

    fn evict(&mut self) {
        let frame = self.frame;
        for (kind, max) in [(ImageSize::Full, MAX_FULL), (ImageSize::Thumb, MAX_THUMBS)] {
            let mut ready: Vec<(u64, Key)> = self
                .slots
                .iter()
                .filter_map(|(k, s)| match s {
                    Slot::Ready { last_used, .. } if k.1 == kind => Some((*last_used, k.clone())),
                    _ => None,
                })
                .collect();
            ready.sort_by_key(|r| std::cmp::Reverse(r.0));
            for (i, (last, key)) in ready.into_iter().enumerate() {
                if i >= max || frame.saturating_sub(last) > KEEP_FRAMES {
                    self.slots.remove(&key);
                }
            }
        }
    }

    /// The texture for `path`, queueing a decode the first time it is asked for.
    pub fn get(&mut self, path: &Path, size: ImageSize) -> ImageState<'_> {
        let key = (path.to_path_buf(), size);
        if !self.slots.contains_key(&key) {
            self.slots.insert(key.clone(), Slot::Queued);
            self.backlog.push_back(key.clone());
        }
        let frame = self.frame;
        match self.slots.get_mut(&key) {
            Some(Slot::Ready { texture, size, last_used }) => {
                *last_used = frame;
                ImageState::Ready(texture, *size)
            }
            Some(Slot::Failed(e)) => ImageState::Failed(e),
            _ => ImageState::Loading,
        }
    }

    /// Decodes queued or running.
    pub fn pending(&self) -> usize {
        self.slots.values().filter(|s| matches!(s, Slot::Queued)).count()
    }

    /// Resident textures (full, thumbnails).
    pub fn resident(&self) -> (usize, usize) {
        let mut n = (0, 0);
        for (k, s) in &self.slots {
            if matches!(s, Slot::Ready { .. }) {
                match k.1 {
                    ImageSize::Full => n.0 += 1,
                    ImageSize::Thumb => n.1 += 1,
                }
            }
        }
        n
    }
}

fn decode(path: &Path, size: ImageSize) -> Result<(ColorImage, [u32; 2]), String> {
    let img = image::open(path).map_err(|e| match e {
        image::ImageError::IoError(io) => format!("{}: {io}", path.display()),
        other => format!("{}: cannot decode: {other}", path.display()),
    })?;
    let full = [img.width(), img.height()];
    let img = match size {
        ImageSize::Full => img,
        ImageSize::Thumb => img.thumbnail(crate::ui::theme::THUMB_DECODE_PX, crate::ui::theme::THUMB_DECODE_PX),
    };
    let rgba = img.to_rgba8();
    let color = ColorImage::from_rgba_unmultiplied([rgba.width() as usize, rgba.height() as usize], rgba.as_raw());
    Ok((color, full))
}
