//! Scale-out on one machine: kao-extract shards (`--shard`, Slurm's and Kubernetes' variables)
//! writing one manifest part per video side by side into one folder, a shard killed and run
//! again, and kao-merge joining the parts into the manifest one machine would have written.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use arrow_array::ArrayRef;
use kao_tests::*;

/// The columns a user reads, compared between layouts.
const COLUMNS: &[&str] = &[
    "source",
    "frame_index",
    "face_index",
    "x",
    "y",
    "w",
    "h",
    "track_id",
    "identity",
    "distance",
    "crop_path",
    "reject_reason",
    "cluster_id",
];

/// Six short clips of the sample (the fourth, 12 s of the sample played twice, much longer,
/// so a kill lands inside it), their list and Obama's reference photo.
fn inputs(dir: &Path) -> (PathBuf, PathBuf) {
    let videos = dir.join("videos");
    std::fs::create_dir_all(&videos).unwrap();
    let mut list = String::new();
    for (i, (start, length)) in [
        (0.0, 1.2),
        (1.3, 1.2),
        (2.6, 1.2),
        (0.2, 12.0),
        (5.2, 1.2),
        (6.5, 1.2),
    ]
    .iter()
    .enumerate()
    {
        let name = format!("clip{i}.mp4");
        let ok = Command::new("ffmpeg")
            .args([
                "-v",
                "error",
                "-y",
                "-stream_loop",
                "1",
                "-ss",
                &start.to_string(),
                "-t",
                &length.to_string(),
                "-i",
            ])
            .arg(fixture("sample.mp4"))
            .args(["-c:v", "libx264", "-preset", "ultrafast", "-an"])
            .arg(videos.join(&name))
            .status()
            .expect("ffmpeg (installed by scripts/deps.sh)")
            .success();
        assert!(ok, "cutting {name}");
        list.push_str(&name);
        list.push('\n');
    }
    std::fs::write(videos.join("videos.txt"), list).unwrap();
    let refs = dir.join("refs/obama");
    std::fs::create_dir_all(&refs).unwrap();
    std::fs::copy(fixture("photos/obama3.jpg"), refs.join("obama3.jpg")).unwrap();
    (videos.join("videos.txt"), dir.join("refs"))
}

/// kao-extract over the list into `out`, with `extra` arguments.
fn extract(list: &Path, refs: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut cmd = kao("kao-extract");
    cmd.arg("--list")
        .arg(list)
        .args(["--every", "3", "--all", "-q", "--ref"])
        .arg(refs)
        .arg("--out")
        .arg(out)
        .args(extra)
        .env_remove("SLURM_ARRAY_TASK_ID")
        .env_remove("JOB_COMPLETION_INDEX");
    cmd
}

fn succeed(cmd: &mut Command) -> String {
    let out = run(cmd);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    err
}

/// The manifest's user-facing columns, whole, and the files under the folder but the
/// manifests and kao's own hidden files.
fn outcome(out: &Path) -> (Vec<ArrayRef>, Vec<String>) {
    let batches = read_file(&out.join("manifest.parquet"));
    let columns = COLUMNS
        .iter()
        .map(|name| {
            let parts: Vec<&dyn arrow_array::Array> = batches
                .iter()
                .map(|b| {
                    b.column_by_name(name)
                        .unwrap_or_else(|| panic!("no {name}"))
                        .as_ref()
                })
                .collect();
            arrow_select::concat::concat(&parts).unwrap()
        })
        .collect();
    let mut files = Vec::new();
    let mut stack = vec![out.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            assert!(
                !name.ends_with(".part"),
                "temporary file left: {}",
                p.display()
            );
            let relative = p.strip_prefix(out).unwrap().to_string_lossy().into_owned();
            if p.is_dir() {
                if relative != "manifest" {
                    stack.push(p);
                }
            } else if !name.starts_with('.') && name != "manifest.parquet" {
                files.push(relative);
            }
        }
    }
    files.sort();
    (columns, files)
}

fn wait_for(path: &Path, child: &mut std::process::Child) {
    let started = Instant::now();
    while !path.exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the shard ended before {}",
            path.display()
        );
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn shards_side_by_side_then_merged_equal_one_machine() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (list, refs) = inputs(d);
    let single = d.join("single");
    succeed(&mut extract(&list, &refs, &single, &[]));
    let expected = outcome(&single);
    assert!(!expected.1.is_empty(), "the single run wrote crops");

    let run_dir = d.join("run");
    // Shard 0 (clips 0 and 3) is killed once clip 0 is done, inside the long clip 3.
    let mut killed = extract(&list, &refs, &run_dir, &["--shard", "0/3"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(
        &kao_pipeline::scale_out::parts::part_path(
            &run_dir,
            &list.with_file_name("clip0.mp4").to_string_lossy(),
        ),
        &mut killed,
    );
    killed.kill().unwrap();
    killed.wait().unwrap();
    // While a shard is missing, kao-merge names the video and exits 3.
    let early = run(kao("kao-merge").arg(&run_dir));
    let err = String::from_utf8_lossy(&early.stderr);
    assert_eq!(early.status.code(), Some(3), "{err}");
    assert!(err.contains("clip3.mp4: no part yet"), "{err}");

    // The other shards side by side: one by --shard, one as a Slurm array task (numbered
    // from 1), one as a Kubernetes Indexed Job pod.
    let mut slurm = extract(&list, &refs, &run_dir, &[]);
    slurm
        .env("SLURM_ARRAY_TASK_ID", "2")
        .env("SLURM_ARRAY_TASK_MIN", "1")
        .env("SLURM_ARRAY_TASK_COUNT", "3")
        .stderr(Stdio::piped());
    let mut k8s = extract(&list, &refs, &run_dir, &["--shard-count", "3"]);
    k8s.env("JOB_COMPLETION_INDEX", "2").stderr(Stdio::piped());
    let (slurm, k8s) = (slurm.spawn().unwrap(), k8s.spawn().unwrap());
    let rerun = succeed(&mut extract(&list, &refs, &run_dir, &["--shard", "0/3"]));
    assert!(
        rerun.contains("shard 0/3 (from --shard): 2 of 6 videos, 1 to do"),
        "{rerun}"
    );
    assert!(
        rerun.contains("taking over from a run that did not finish"),
        "{rerun}"
    );
    for (child, says) in [
        (slurm, "shard 1/3 (from Slurm)"),
        (k8s, "shard 2/3 (from Kubernetes)"),
    ] {
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && err.contains(says), "{err}");
    }

    let merged = succeed(kao("kao-merge").arg(&run_dir));
    assert!(merged.contains("6 parts"), "{merged}");
    let got = outcome(&run_dir);
    assert_eq!(got.1, expected.1, "crops");
    for (name, (a, b)) in COLUMNS.iter().zip(got.0.iter().zip(&expected.0)) {
        assert_eq!(a.as_ref(), b.as_ref(), "column {name}");
    }
    // Merging again gives the same (crops already moved into clusters stay found).
    succeed(kao("kao-merge").arg(&run_dir));
    assert_eq!(outcome(&run_dir), got);
}

#[test]
fn bad_shards_and_layouts_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (list, refs) = inputs(d);
    let one_line_error = |cmd: &mut Command, says: &str| {
        let out = run(cmd);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(says), "{says}: {err}");
    };
    let out = d.join("out");
    // Malformed --shard values are usage errors (clap's status 2), naming the problem.
    for (shard, says) in [("3/3", "does not exist"), ("1", "is not I/N")] {
        let o = run(&mut extract(&list, &refs, &out, &["--shard", shard]));
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.lines().next().unwrap_or("").contains(says), "{err}");
    }
    one_line_error(
        &mut extract(&list, &refs, &out, &["--shard-count", "4"]),
        "--shard-count goes with a Kubernetes Indexed Job",
    );
    one_line_error(kao("kao-merge").arg(d), "no manifest parts");
    one_line_error(kao("kao-merge").arg(d.join("missing")), "no such folder");
    // A single run's folder takes no shards; a sharded run's folder takes no single run.
    let single = d.join("single");
    succeed(&mut extract(&list, &refs, &single, &["--max-frames", "3"]));
    one_line_error(
        &mut extract(
            &list,
            &refs,
            &single,
            &["--shard", "0/2", "--max-frames", "3"],
        ),
        "holds the manifest of a run without shards",
    );
    let sharded = d.join("sharded");
    succeed(&mut extract(
        &list,
        &refs,
        &sharded,
        &["--shard", "1/2", "--max-frames", "3"],
    ));
    one_line_error(
        &mut extract(&list, &refs, &sharded, &["--max-frames", "3"]),
        "holds a sharded run's manifest parts",
    );
    // kao-merge waits for running shards (each holds the folder's lock shared).
    let share = kao_pipeline::align::lock::OutputLock::acquire_shared(&sharded).unwrap();
    one_line_error(
        kao("kao-merge").arg(&sharded),
        "the shards of a sharded run are writing",
    );
    drop(share);
    // Parts made with other options are refused by name.
    succeed(&mut extract(
        &list,
        &refs,
        &sharded,
        &["--shard", "0/2", "--max-frames", "4"],
    ));
    one_line_error(kao("kao-merge").arg(&sharded), "made with other options");
}

/// A single-node Slurm (Debian's munged, slurmctld and slurmd, as scripts/deps.sh installs
/// them) in a folder of its own, stopped when dropped.
struct Slurm {
    conf: PathBuf,
    daemons: Vec<std::process::Child>,
}

impl Slurm {
    fn start(dir: &Path) -> Slurm {
        let have = |name: &str| {
            ["/usr/sbin", "/usr/bin"]
                .iter()
                .any(|d| Path::new(d).join(name).exists())
        };
        for name in ["munged", "slurmctld", "slurmd", "sbatch"] {
            assert!(
                have(name),
                "{name} is missing: scripts/deps.sh installs Slurm"
            );
        }
        let d = dir.join("slurm");
        std::fs::create_dir_all(d.join("state")).unwrap();
        std::fs::create_dir_all(d.join("spool")).unwrap();
        // munge: a key of our own, a socket of our own.
        use std::os::unix::fs::PermissionsExt;
        let key: Vec<u8> = (0..1024).map(|_| fastrand_byte()).collect();
        std::fs::write(d.join("munge.key"), key).unwrap();
        std::fs::set_permissions(d.join("munge.key"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
        let socket = d.join("munge.socket");
        let mut daemons = vec![
            Command::new("munged")
                .args(["--foreground", "--force", "--num-threads=2"])
                .arg(format!("--socket={}", socket.display()))
                .arg(format!("--key-file={}", d.join("munge.key").display()))
                .arg(format!("--pid-file={}", d.join("munged.pid").display()))
                .arg(format!("--log-file={}", d.join("munged.log").display()))
                .arg(format!("--seed-file={}", d.join("munged.seed").display()))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("munged"),
        ];
        let host = String::from_utf8(Command::new("hostname").arg("-s").output().unwrap().stdout)
            .unwrap()
            .trim()
            .to_string();
        let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout)
            .unwrap()
            .trim()
            .to_string();
        // Ports of this process, so that a leftover of another run does not answer.
        let port = 20000 + (std::process::id() % 20000) as u16;
        let conf = d.join("slurm.conf");
        let dd = d.display();
        std::fs::write(
            &conf,
            format!(
                "ClusterName=kao\nSlurmctldHost={host}(127.0.0.1)\nSlurmUser={user}\nSlurmdUser={user}\n\
                 AuthType=auth/munge\nCredType=cred/munge\nAuthInfo=socket={}\n\
                 StateSaveLocation={dd}/state\nSlurmdSpoolDir={dd}/spool\n\
                 SlurmctldPidFile={dd}/slurmctld.pid\nSlurmdPidFile={dd}/slurmd.pid\n\
                 SlurmctldPort={port}\nSlurmdPort={}\nProctrackType=proctrack/linuxproc\n\
                 TaskPlugin=task/none\nJobAcctGatherType=jobacct_gather/none\n\
                 AccountingStorageType=accounting_storage/none\nSelectType=select/cons_tres\n\
                 SelectTypeParameters=CR_Core\nMpiDefault=none\nReturnToService=2\n\
                 SlurmdParameters=config_overrides\nKillWait=5\n\
                 SlurmctldLogFile={dd}/slurmctld.log\nSlurmdLogFile={dd}/slurmd.log\n\
                 NodeName={host} NodeAddr=127.0.0.1 CPUs=8 RealMemory=8000 State=UNKNOWN\n\
                 PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP\n",
                socket.display(),
                port + 1
            ),
        )
        .unwrap();
        let started = Instant::now();
        while !socket.exists() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "munged did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        for daemon in ["slurmctld", "slurmd"] {
            daemons.push(
                Command::new(daemon)
                    .arg("-D")
                    .arg("-f")
                    .arg(&conf)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect(daemon),
            );
        }
        let slurm = Slurm { conf, daemons };
        let started = Instant::now();
        loop {
            let out = slurm
                .command("sinfo")
                .args(["-h", "-o", "%T"])
                .output()
                .unwrap();
            if String::from_utf8_lossy(&out.stdout).trim() == "idle" {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the Slurm node is not idle: {}",
                std::fs::read_to_string(d.join("slurmctld.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        slurm
    }

    /// A Slurm client command for this cluster, with the kao binaries on its PATH.
    fn command(&self, name: &str) -> Command {
        let mut cmd = Command::new(name);
        let bins = bin("kao-extract").parent().unwrap().to_path_buf();
        let path = format!(
            "{}:{}",
            bins.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        cmd.env("SLURM_CONF", &self.conf).env("PATH", path);
        cmd
    }

    /// Waits until the queue is empty.
    fn drain(&self) {
        let started = Instant::now();
        loop {
            let out = self.command("squeue").arg("-h").output().unwrap();
            if out.status.success() && out.stdout.is_empty() {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(300),
                "jobs still queued"
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

impl Drop for Slurm {
    fn drop(&mut self) {
        for daemon in self.daemons.iter_mut().rev() {
            let _ = daemon.kill();
            let _ = daemon.wait();
        }
    }
}

/// A random byte from the clock and a counter (a munge key needs no more for a test).
fn fastrand_byte() -> u8 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    h.finish() as u8
}

/// Where a Slurm test run writes: a shared folder, or a bucket of the local S3 server.
enum Target<'a> {
    #[cfg_attr(feature = "object-store", allow(dead_code))]
    Folder,
    #[cfg(feature = "object-store")]
    S3(&'a s3::Moto),
    #[cfg(not(feature = "object-store"))]
    #[allow(dead_code)]
    Never(std::marker::PhantomData<&'a ()>),
}

#[cfg(not(feature = "object-store"))]
#[test]
fn a_slurm_array_and_its_merge_job_equal_one_machine() {
    slurm_array_and_merge(Target::Folder);
}

#[cfg(feature = "object-store")]
#[test]
fn s3_a_slurm_array_and_its_merge_job_equal_one_machine() {
    let moto = s3::Moto::start();
    slurm_array_and_merge(Target::S3(&moto));
    // Transient errors were retried: the proxy in front of the server failed some requests.
    assert!(moto.failed() > 0, "no request was failed by the proxy");
}

fn slurm_array_and_merge(target: Target) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (list, refs) = inputs(d);
    let single = d.join("single");
    succeed(&mut extract(&list, &refs, &single, &[]));
    let expected = outcome(&single);
    let slurm = Slurm::start(d);
    let run_dir = d.join("run");
    let out: String = match &target {
        Target::Folder => run_dir.to_string_lossy().into_owned(),
        #[cfg(feature = "object-store")]
        Target::S3(moto) => moto.url("run"),
        #[cfg(not(feature = "object-store"))]
        Target::Never(_) => unreachable!(),
    };
    let submit = tests_dir().join("../deploy/slurm/submit.sh");
    // A 4-task array over the 6 videos and the merge job depending on it; one task is
    // cancelled inside its video (Slurm's SIGTERM).
    let submit = || {
        let mut cmd = slurm.command(submit.to_str().unwrap());
        cmd.arg(&list)
            .arg(&refs)
            .arg(&out)
            .args(["4", "--every", "3", "--all"])
            .current_dir(d);
        #[cfg(feature = "object-store")]
        if let Target::S3(moto) = &target {
            moto.env(&mut cmd);
        }
        cmd.output().unwrap()
    };
    let out = submit();
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let array = said.lines().next().unwrap().trim().to_string();
    // Task 3's one video is the long clip: cancelled once it has started on it (its
    // partition's lock, or its lease in the store).
    let clip3 = list
        .with_file_name("clip3.mp4")
        .to_string_lossy()
        .into_owned();
    let started_on = || -> bool {
        match &target {
            Target::Folder => kao_pipeline::scale_out::parts::part_dir(&run_dir, &clip3)
                .join(".kao-lock")
                .exists(),
            #[cfg(feature = "object-store")]
            Target::S3(moto) => moto.exists(&format!(
                "run/manifest/video={}/.kao-lease",
                kao_pipeline::scale_out::parts::video_key(&clip3)
            )),
            #[cfg(not(feature = "object-store"))]
            Target::Never(_) => unreachable!(),
        }
    };
    let started = Instant::now();
    let logs = || -> String {
        std::fs::read_dir(d)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
            .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
            .collect()
    };
    while !started_on() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "task 3 did not start: {}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let cancel = slurm
        .command("scancel")
        .arg(format!("{array}_3"))
        .status()
        .unwrap();
    assert!(cancel.success());
    slurm.drain();
    let merge_log = std::fs::read_dir(d)
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("kao-merge-"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .expect("the merge job's log");
    let task3 = std::fs::read_dir(d)
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().ends_with("_3.log"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .unwrap_or_default();
    assert!(
        merge_log.contains("clip3.mp4: no part yet"),
        "{merge_log}\ntask 3: {task3}"
    );
    // Submitted again: only the cancelled video is done again, and the merge completes.
    let again = submit();
    assert!(again.status.success());
    slurm.drain();
    let got = match &target {
        Target::Folder => outcome(&run_dir),
        #[cfg(feature = "object-store")]
        Target::S3(moto) => moto.outcome("run", &d.join("downloaded")),
        #[cfg(not(feature = "object-store"))]
        Target::Never(_) => unreachable!(),
    };
    assert_eq!(got.1, expected.1, "crops");
    for (name, (a, b)) in COLUMNS.iter().zip(got.0.iter().zip(&expected.0)) {
        assert_eq!(a.as_ref(), b.as_ref(), "column {name}");
    }
}

/// Stores that refuse: a missing bucket, a store that refuses every write, a multipart upload
/// refused half-way (aborted, none left open); and a URL in a build without the feature.
#[cfg(feature = "object-store")]
#[test]
fn s3_a_store_that_refuses_writes_is_one_line() {
    use std::sync::atomic::Ordering;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (list, refs) = inputs(d);
    let moto = s3::Moto::start();
    let one_line_error = |cmd: &mut Command, says: &[&str]| {
        moto.env(cmd);
        let out = run(cmd);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        for s in says {
            assert!(err.contains(s), "{s}: {err}");
        }
        assert!(!err.contains("kao-test-secret"), "{err}");
    };
    let shard = ["--shard", "0/2", "--max-frames", "3"];
    one_line_error(
        &mut extract(&list, &refs, Path::new("s3://no-such-bucket/run"), &shard),
        &["s3://no-such-bucket/run: cannot write", "NoSuchBucket"],
    );
    moto.faults.refuse_puts.store(true, Ordering::SeqCst);
    one_line_error(
        &mut extract(&list, &refs, Path::new(&moto.url("refused")), &shard),
        &[
            "s3://kao/refused: cannot write: permission denied",
            "AccessDenied",
        ],
    );
    one_line_error(
        &mut extract(
            &list,
            &refs,
            Path::new(&moto.url("refused")),
            &["--max-frames", "3"],
        ),
        &["a run into object storage is a sharded run", "--shard 0/1"],
    );
    assert!(
        moto.keys("refused/").is_empty(),
        "written: {:?}",
        moto.keys("refused/")
    );
    moto.faults.refuse_puts.store(false, Ordering::SeqCst);

    // A small run merged with multipart uploads of 4 KiB parts, the later parts refused: the
    // merge fails in one line and aborts its upload.
    let mut cmd = extract(
        &list,
        &refs,
        Path::new(&moto.url("small")),
        &["--shard", "0/1", "--max-frames", "3"],
    );
    moto.env(&mut cmd);
    succeed(&mut cmd);
    moto.faults.refuse_parts.store(true, Ordering::SeqCst);
    let mut merge = kao("kao-merge");
    merge
        .arg(moto.url("small"))
        .env("KAO_STORE_PART_BYTES", "4096");
    one_line_error(
        &mut merge,
        &[
            "s3://kao/small/manifest.parquet: cannot write",
            "AccessDenied",
        ],
    );
    assert_eq!(
        moto.open_uploads(),
        Vec::<String>::new(),
        "an upload left open"
    );
    assert!(!moto.exists("small/manifest.parquet"));
    // Allowed again, the same multipart upload completes.
    moto.faults.refuse_parts.store(false, Ordering::SeqCst);
    let mut merge = kao("kao-merge");
    merge
        .arg(moto.url("small"))
        .env("KAO_STORE_PART_BYTES", "4096");
    moto.env(&mut merge);
    succeed(&mut merge);
    assert!(moto.exists("small/manifest.parquet"));
    assert!(moto.open_uploads().is_empty());
}

/// In a build without the `object-store` feature, a URL is one line naming the feature.
#[cfg(not(feature = "object-store"))]
#[test]
fn a_url_needs_the_object_store_feature() {
    let dir = tempfile::tempdir().unwrap();
    let (list, refs) = inputs(dir.path());
    for cmd in [
        &mut extract(
            &list,
            &refs,
            Path::new("s3://bucket/run"),
            &["--shard", "0/2"],
        ),
        kao("kao-merge").arg("s3://bucket/run"),
    ] {
        let out = run(cmd);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(
            err.contains("s3://bucket/run: object storage needs"),
            "{err}"
        );
        assert!(err.contains("`object-store` feature"), "{err}");
    }
}

/// The local S3 server (moto's, from PyPI: scripts/moto_env.sh) on 127.0.0.1, behind a proxy
/// that fails some requests with 503 (transient errors kao must retry) or, when told, refuses
/// writes.
#[cfg(feature = "object-store")]
mod s3 {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::path::Path;
    use std::process::{Child, Command, Stdio};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    use arrow_array::ArrayRef;

    pub const BUCKET: &str = "kao";
    /// moto answers anonymous object requests 403 (private objects) and checks no signature.
    const AUTH: &str = "Authorization: AWS4-HMAC-SHA256 Credential=kao-test/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0\r\n";

    /// How the proxy treats requests.
    #[derive(Default)]
    pub struct Faults {
        /// Connections seen.
        connections: AtomicUsize,
        /// Requests answered 503.
        failed: AtomicUsize,
        /// Answer every PUT with 403 (a store that refuses writes).
        pub refuse_puts: AtomicBool,
        /// Answer 403 to the parts of multipart uploads after the first.
        pub refuse_parts: AtomicBool,
    }

    pub struct Moto {
        server: Child,
        port: u16,
        proxy: u16,
        pub faults: Arc<Faults>,
    }

    fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    impl Moto {
        pub fn start() -> Moto {
            let bin = std::env::var("HOME")
                .map(|h| Path::new(&h).join(".cache/kao/moto/bin/moto_server"))
                .unwrap();
            let bin = std::env::var("XDG_CACHE_HOME")
                .map(|c| Path::new(&c).join("kao/moto/bin/moto_server"))
                .ok()
                .filter(|p| p.exists())
                .unwrap_or(bin);
            assert!(
                bin.exists(),
                "{} is missing: scripts/deps.sh installs it",
                bin.display()
            );
            let port = free_port();
            let server = Command::new(&bin)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                // Small multipart parts, so the multipart path is tried on small files.
                .env("S3_UPLOAD_PART_MIN_SIZE", "1024")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("moto_server");
            let started = Instant::now();
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "moto_server did not start"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
            let faults = Arc::new(Faults::default());
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let proxy = listener.local_addr().unwrap().port();
            let f = faults.clone();
            std::thread::spawn(move || {
                for client in listener.incoming().flatten() {
                    let f = f.clone();
                    std::thread::spawn(move || serve(client, port, &f));
                }
            });
            let moto = Moto {
                server,
                port,
                proxy,
                faults,
            };
            let (status, _) = moto.http("PUT", &format!("/{BUCKET}"), &[]);
            assert_eq!(status, 200, "creating the bucket");
            moto
        }

        /// `s3://` URL of `prefix` in the test bucket.
        pub fn url(&self, prefix: &str) -> String {
            format!("s3://{BUCKET}/{prefix}")
        }

        /// The environment a kao process needs for the server (through the proxy).
        pub fn env(&self, cmd: &mut Command) {
            cmd.env("AWS_ACCESS_KEY_ID", "kao-test")
                .env("AWS_SECRET_ACCESS_KEY", "kao-test-secret")
                .env("AWS_REGION", "us-east-1")
                .env(
                    "AWS_ENDPOINT_URL",
                    format!("http://127.0.0.1:{}", self.proxy),
                )
                .env("AWS_ALLOW_HTTP", "true");
        }

        /// Requests the proxy failed with 503.
        pub fn failed(&self) -> usize {
            self.faults.failed.load(Ordering::SeqCst)
        }

        /// One request straight to the server (moto checks no signature): status, body.
        pub fn http(&self, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
            let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
            write!(
                s,
                "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\n{AUTH}Connection: close\r\n\r\n",
                self.port,
                body.len()
            )
            .unwrap();
            s.write_all(body).unwrap();
            let mut reply = Vec::new();
            s.read_to_end(&mut reply).unwrap();
            let head_end = reply
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .expect("an HTTP reply");
            let head = String::from_utf8_lossy(&reply[..head_end]).into_owned();
            let status = head.split(' ').nth(1).unwrap().parse().unwrap();
            let mut body = reply[head_end + 4..].to_vec();
            if head
                .to_ascii_lowercase()
                .contains("transfer-encoding: chunked")
            {
                body = unchunk(&body);
            }
            (status, body)
        }

        /// Whether object `key` exists.
        pub fn exists(&self, key: &str) -> bool {
            self.http("HEAD", &format!("/{BUCKET}/{key}"), &[]).0 == 200
        }

        /// The keys under `prefix`.
        pub fn keys(&self, prefix: &str) -> Vec<String> {
            let (status, body) = self.http(
                "GET",
                &format!("/{BUCKET}?list-type=2&max-keys=10000&prefix={prefix}"),
                &[],
            );
            assert_eq!(status, 200);
            tags(&String::from_utf8_lossy(&body), "Key")
        }

        /// Multipart uploads begun and neither completed nor aborted.
        pub fn open_uploads(&self) -> Vec<String> {
            let (status, body) = self.http("GET", &format!("/{BUCKET}?uploads"), &[]);
            assert_eq!(status, 200);
            tags(&String::from_utf8_lossy(&body), "UploadId")
        }

        /// As `outcome` of a folder: the merged manifest's columns and the crops under
        /// `prefix`.
        pub fn outcome(&self, prefix: &str, scratch: &Path) -> (Vec<ArrayRef>, Vec<String>) {
            std::fs::create_dir_all(scratch).unwrap();
            let (status, body) =
                self.http("GET", &format!("/{BUCKET}/{prefix}/manifest.parquet"), &[]);
            assert_eq!(status, 200, "no merged manifest");
            std::fs::write(scratch.join("manifest.parquet"), body).unwrap();
            let (columns, none) = super::outcome(scratch);
            assert!(none.is_empty());
            let mut files: Vec<String> = self
                .keys(&format!("{prefix}/"))
                .into_iter()
                .map(|k| k[prefix.len() + 1..].to_string())
                .filter(|k| {
                    !k.starts_with("manifest/")
                        && k != "manifest.parquet"
                        && !k.split('/').any(|p| p.starts_with('.'))
                })
                .collect();
            files.sort();
            // No lease left behind, and every part is where its video's key says.
            for key in self.keys(&format!("{prefix}/manifest/")) {
                assert!(key.ends_with("/part-0.parquet"), "left in the store: {key}");
            }
            (columns, files)
        }
    }

    impl Drop for Moto {
        fn drop(&mut self) {
            let _ = self.server.kill();
            let _ = self.server.wait();
        }
    }

    fn tags(xml: &str, name: &str) -> Vec<String> {
        let (open, close) = (format!("<{name}>"), format!("</{name}>"));
        xml.split(&open)
            .skip(1)
            .filter_map(|s| s.split(&close).next())
            .map(str::to_string)
            .collect()
    }

    fn unchunk(mut data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let Some(end) = data.windows(2).position(|w| w == b"\r\n") else {
                return out;
            };
            let size = usize::from_str_radix(String::from_utf8_lossy(&data[..end]).trim(), 16)
                .unwrap_or(0);
            if size == 0 {
                return out;
            }
            out.extend_from_slice(&data[end + 2..end + 2 + size]);
            data = &data[end + 2 + size + 2..];
        }
    }

    /// One client connection, one request: every fourth request is answered 503 (after it was
    /// read whole); PUTs are refused with 403 when told; the others go to the server on a
    /// connection of their own, and the answer comes back with `Connection: close`.
    fn serve(client: TcpStream, port: u16, faults: &Faults) {
        let n = faults.connections.fetch_add(1, Ordering::SeqCst);
        let mut reader = BufReader::new(client.try_clone().unwrap());
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line.to_ascii_lowercase().starts_with("connection:") {
                continue;
            }
            if line == "\r\n" {
                head.push_str("Connection: close\r\n\r\n");
                break;
            }
            head.push_str(&line);
        }
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let request_line = head.lines().next().unwrap_or_default().to_string();
        let put = request_line.starts_with("PUT ");
        let later_part = request_line.contains("partNumber=")
            && !request_line.contains("partNumber=1&")
            && !request_line.contains("partNumber=1 ");
        let refuse = put
            && (faults.refuse_puts.load(Ordering::SeqCst)
                || (later_part && faults.refuse_parts.load(Ordering::SeqCst)));
        let mut client = client;
        if refuse {
            let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>";
            let _ = write!(
                client,
                "HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{xml}",
                xml.len()
            );
            return;
        }
        if n % 4 == 3 {
            faults.failed.fetch_add(1, Ordering::SeqCst);
            let _ = client.write_all(
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
            return;
        }
        let Ok(mut server) = TcpStream::connect(("127.0.0.1", port)) else {
            return;
        };
        if server.write_all(head.as_bytes()).is_err() || server.write_all(&body).is_err() {
            return;
        }
        let mut reply = Vec::new();
        if server.read_to_end(&mut reply).is_err() {
            return;
        }
        // The server's answer, told to close (each request has a connection of its own).
        let at = reply
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or(reply.len());
        let head = String::from_utf8_lossy(&reply[..at]).into_owned();
        let mut out: String = head
            .split("\r\n")
            .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
            .map(|l| format!("{l}\r\n"))
            .collect();
        out.push_str("Connection: close\r\n");
        let _ = client.write_all(out.as_bytes());
        let _ = client.write_all(&reply[(at + 2).min(reply.len())..]);
    }
}
