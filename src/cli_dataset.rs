//! `sightline dataset inspect|validate|convert`: the dataset formats of protocol §4 from the
//! command line.

use crate::core::datasets::{self, DatasetFormat, DatasetIndex, ImagePaths, OpenOptions, WriteOptions};
use crate::core::trajectory::Trajectory;
use anyhow::{anyhow, Result};
use clap::{Subcommand, ValueEnum};
use std::io::Write;
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum FormatArg {
    Llamafactory,
    Sharegpt,
    VilasrRl,
    VilavtSft,
    VilavtRl,
    Benchmark,
    VilasrResults,
}

impl From<FormatArg> for DatasetFormat {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::Llamafactory => DatasetFormat::LlamaFactory,
            FormatArg::Sharegpt => DatasetFormat::Sharegpt,
            FormatArg::VilasrRl => DatasetFormat::VilasrRl,
            FormatArg::VilavtSft => DatasetFormat::VilavtSft,
            FormatArg::VilavtRl => DatasetFormat::VilavtRl,
            FormatArg::Benchmark => DatasetFormat::Benchmark,
            FormatArg::VilasrResults => DatasetFormat::VilasrResults,
        }
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ConvertTo {
    /// LLaMA-Factory sharegpt file + dataset_info.json entry (conversation formats).
    Llamafactory,
    /// One Sightline sample per line (JSON lines).
    Samples,
    /// One Sightline trajectory folder per record (conversation formats).
    Trajectories,
}

/// Common options for opening a dataset.
#[derive(clap::Args, Debug)]
pub struct OpenArgs {
    /// dataset_info.json, a sharegpt file, a ViLaSR/ViLaVT jsonl, a benchmark json or results.jsonl.
    pub path: PathBuf,
    /// Force the format instead of detecting it.
    #[arg(long, value_enum)]
    pub format: Option<FormatArg>,
    /// Resolve image paths against this folder (default: the format's root).
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// LLaMA-Factory: only these dataset entries (repeat).
    #[arg(long = "dataset")]
    pub datasets: Vec<String>,
}

impl OpenArgs {
    fn open(&self) -> Result<DatasetIndex> {
        let opts = OpenOptions {
            format: self.format.map(Into::into),
            root: self.root.clone(),
            datasets: if self.datasets.is_empty() { None } else { Some(self.datasets.clone()) },
        };
        DatasetIndex::open_with(&self.path, &opts).map_err(|e| anyhow!("{e}"))
    }
}

#[derive(Subcommand, Debug)]
pub enum DatasetCommand {
    /// Print the format, record count and files; with --record, that record as a Sightline sample
    /// (and trajectory for conversation formats); with --head N, the first N samples as JSON lines.
    Inspect {
        #[command(flatten)]
        open: OpenArgs,
        #[arg(long)]
        record: Option<usize>,
        #[arg(long)]
        head: Option<usize>,
    },
    /// Parse every record and report problems (exit 1 when any); --check-images also checks that
    /// every referenced image exists inside the dataset root.
    Validate {
        #[command(flatten)]
        open: OpenArgs,
        #[arg(long)]
        check_images: bool,
    },
    /// Convert a dataset.
    Convert {
        #[command(flatten)]
        open: OpenArgs,
        #[arg(long, value_enum)]
        to: ConvertTo,
        #[arg(long)]
        out: PathBuf,
        /// Dataset name for --to llamafactory.
        #[arg(long, default_value = "sightline")]
        name: String,
        /// --to llamafactory: copy images next to the output instead of referencing them.
        #[arg(long)]
        copy_images: bool,
    },
}

pub fn run(cmd: DatasetCommand) -> Result<i32> {
    match cmd {
        DatasetCommand::Inspect { open, record, head } => inspect(&open, record, head),
        DatasetCommand::Validate { open, check_images } => {
            let index = open.open()?;
            let report = datasets::validate(&index, check_images);
            println!("{}", report.summary(20));
            Ok(if report.is_ok() { 0 } else { 1 })
        }
        DatasetCommand::Convert { open, to, out, name, copy_images } => convert(&open, to, &out, &name, copy_images),
    }
}

fn inspect(open: &OpenArgs, record: Option<usize>, head: Option<usize>) -> Result<i32> {
    let started = std::time::Instant::now();
    let index = open.open()?;
    let elapsed = started.elapsed();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if let Some(i) = record {
        let r = index.record(i).map_err(|e| anyhow!("{e}"))?;
        let sample = r.to_sample().map_err(|e| anyhow!("{e}"))?;
        let mut v = serde_json::json!({ "record": i, "sample": sample });
        if index.format.has_conversation() {
            v["trajectory"] = serde_json::to_value(r.to_trajectory().map_err(|e| anyhow!("{e}"))?)?;
        }
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(0);
    }
    if let Some(n) = head {
        for i in 0..n.min(index.len()) {
            let line = match index.record(i).and_then(|r| r.to_sample()) {
                Ok(s) => serde_json::to_string(&s)?,
                Err(e) => serde_json::json!({ "error": e.to_string() }).to_string(),
            };
            writeln!(out, "{line}")?;
        }
        return Ok(0);
    }
    let files: Vec<String> = index.files().iter().map(|f| f.path.display().to_string()).collect();
    let v = serde_json::json!({
        "path": index.path.display().to_string(),
        "format": index.format.name(),
        "protocol": index.format.protocol().to_string(),
        "records": index.len(),
        "root": index.root.display().to_string(),
        "files": files,
        "skipped": index.skipped(),
        "index_ms": elapsed.as_secs_f64() * 1000.0,
    });
    writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
    Ok(0)
}

fn convert(open: &OpenArgs, to: ConvertTo, out_dir: &std::path::Path, name: &str, copy_images: bool) -> Result<i32> {
    let index = open.open()?;
    let pb = crate::cli::progress(index.len() as u64, "converting");
    let mut bad = 0usize;
    match to {
        ConvertTo::Samples => {
            std::fs::create_dir_all(out_dir)?;
            let mut text = String::new();
            for r in index.iter() {
                pb.inc(1);
                match r.and_then(|r| r.to_sample()) {
                    Ok(s) => {
                        text.push_str(&serde_json::to_string(&s)?);
                        text.push('\n');
                    }
                    Err(e) => {
                        bad += 1;
                        eprintln!("{e}");
                    }
                }
            }
            let file = out_dir.join("samples.jsonl");
            crate::core::trajectory::write_atomic(&file, text.as_bytes()).map_err(|e| anyhow!("{e}"))?;
            println!("wrote {}", file.display());
        }
        ConvertTo::Llamafactory | ConvertTo::Trajectories => {
            if !index.format.has_conversation() {
                return Err(anyhow!("{}: format {} holds no conversations; use --to samples", index.path.display(), index.format.name()));
            }
            let mut trajs: Vec<Trajectory> = Vec::new();
            for r in index.iter() {
                pb.inc(1);
                match r.and_then(|r| r.to_trajectory()) {
                    Ok(t) => trajs.push(t),
                    Err(e) => {
                        bad += 1;
                        eprintln!("{e}");
                    }
                }
            }
            if matches!(to, ConvertTo::Llamafactory) {
                let opts = WriteOptions {
                    image_paths: if copy_images { ImagePaths::Copy { base: None } } else { ImagePaths::AsIs },
                    ..Default::default()
                };
                let s = datasets::write_llamafactory(out_dir, name, &trajs, &opts).map_err(|e| anyhow!("{e}"))?;
                println!("wrote {} records ({} images) to {} and {}", s.records, s.images, s.data_file.display(), s.dataset_info.display());
                for k in &s.skipped {
                    eprintln!("skipped {k}");
                }
            } else {
                for (i, t) in trajs.iter().enumerate() {
                    t.save_dir(&out_dir.join(format!("{:06}-{}", i, sanitize(&t.id)))).map_err(|e| anyhow!("{e}"))?;
                }
                println!("wrote {} trajectory folders under {}", trajs.len(), out_dir.display());
            }
        }
    }
    pb.finish_and_clear();
    if bad > 0 {
        eprintln!("{bad} record(s) could not be converted");
        return Ok(1);
    }
    Ok(0)
}

fn sanitize(id: &str) -> String {
    id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).take(60).collect()
}
