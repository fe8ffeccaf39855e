//! Which HTP the graphs are prepared for. QNN numbers SoCs itself (`--soc 57` = SM8650); the
//! table below is what this build of the HTP library says about each one it was asked about,
//! so a request for a target that cannot run fp16 graphs is refused up front instead of giving
//! wrong numbers.
//!
//! Every row was measured against `libQnnHtp.so` 2.51.0 (core API 2.40) by creating a device for
//! the SoC, preparing a graph and reading the library's own log: the HTP arch from "Arch 68 set
//! by custom config is different from arch associated with SoC N, will overwrite it to A", the
//! name from "Performance Estimates unsupported on soc NAME", fp16 from "SocModel supports FP16" /
//! "SocModel doesn't support FP16" (verbose level), and whether finalize profiles carry the
//! library's cost-model estimate ("Simulated (Accelerator exec time us)"). The test
//! `soc_table_matches_the_library` re-checks each row against the running library.
//!
//! Why this matters: with no target, the x86_64 library prepares for SoC 30 (SM8350, HTP v68),
//! logs "SocModel doesn't support FP16" at verbose level and still accepts fp16 graphs, whose
//! results are then wrong. No current Snapdragon phone is a v68 part.

use sys_qnn::DeviceOptions;

use crate::error::{Error, Result};

/// One SoC as the HTP library describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocInfo {
    /// QNN's SoC model number (`--soc`).
    pub soc_model: u32,
    /// The part number the library logs for it (`None`: it logs none).
    pub name: Option<&'static str>,
    /// HTP architecture the library prepares for (68 = v68, …).
    pub htp_arch: u32,
    /// Whether the library accepts fp16 graphs for it ("SocModel supports FP16").
    pub fp16: bool,
    /// Whether finalize reports the library's cost-model estimate for it.
    pub cost_model: bool,
}

const fn soc(
    soc_model: u32,
    name: Option<&'static str>,
    htp_arch: u32,
    fp16: bool,
    cost_model: bool,
) -> SocInfo {
    SocInfo {
        soc_model,
        name,
        htp_arch,
        fp16,
        cost_model,
    }
}

/// The SoCs measured (see the module docs). Phones first.
pub const KNOWN_SOCS: &[SocInfo] = &[
    soc(30, Some("SM8350"), 68, false, false),
    soc(36, Some("SM8450"), 69, true, false),
    soc(42, Some("SM8475"), 69, true, false),
    soc(43, Some("SM8550"), 73, true, false),
    soc(57, Some("SM8650"), 75, true, false),
    soc(69, Some("SM8750"), 79, true, false),
    soc(87, Some("SM8850"), 81, true, false),
    soc(68, Some("SM8635"), 73, false, false),
    soc(60, Some("SC8380XP"), 73, true, false),
    soc(52, None, 73, true, true),
    soc(72, None, 81, true, true),
];

/// The target used on an x86_64 host when none is given: SM8750 (HTP v79), the newest phone
/// SoC in the table, and the arch whose code the host emulator runs whatever the target.
pub const HOST_DEFAULT_SOC: u32 = 69;

/// Looks a SoC up in [`KNOWN_SOCS`].
pub fn lookup(soc_model: u32) -> Option<&'static SocInfo> {
    KNOWN_SOCS.iter().find(|s| s.soc_model == soc_model)
}

/// `SM8650 (SoC 57, HTP v75)`, or `SoC 99` for one not in the table.
pub fn describe(soc_model: u32) -> String {
    match lookup(soc_model) {
        Some(SocInfo {
            name: Some(n),
            htp_arch,
            ..
        }) => format!("{n} (SoC {soc_model}, HTP v{htp_arch})"),
        Some(s) => format!("SoC {soc_model} (HTP v{})", s.htp_arch),
        None => format!("SoC {soc_model}"),
    }
}

/// Where the target came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetSource {
    /// `--soc` / `--htp-arch` / the builder.
    Requested,
    /// None was given on an x86_64 host: [`HOST_DEFAULT_SOC`].
    HostDefault,
    /// None was given on a device: QNN prepares for the HTP it runs on.
    DeviceNative,
}

/// The target graphs are prepared for, after defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedTarget {
    /// Options for `deviceCreate` (both `None`: no device config, the library's native target).
    pub options: DeviceOptions,
    pub source: TargetSource,
}

impl ResolvedTarget {
    /// A one-line description for `tandem devices` and logs.
    pub fn describe(&self) -> String {
        let what = match (self.options.soc_model, self.options.arch) {
            (Some(s), _) => describe(s),
            (None, Some(a)) => format!("HTP v{a}"),
            (None, None) => "the HTP of this device".to_string(),
        };
        match self.source {
            TargetSource::HostDefault => format!("{what}, the default on x86_64 hosts"),
            TargetSource::Requested | TargetSource::DeviceNative => what,
        }
    }
}

/// Applies the default target and refuses targets that cannot run fp16 graphs (every graph of
/// this version is fp16). An arch given alone must be v69 or newer (the library marks v68 parts
/// fp16-incapable); a SoC outside the table is passed through with a warning, since the
/// library's own op validation may still refuse it.
pub fn resolve(requested: &DeviceOptions) -> Result<ResolvedTarget> {
    let host = cfg!(target_arch = "x86_64");
    let (options, source) = match (requested.soc_model, requested.arch) {
        (None, None) if host => (
            DeviceOptions {
                soc_model: Some(HOST_DEFAULT_SOC),
                arch: None,
            },
            TargetSource::HostDefault,
        ),
        (None, None) => (DeviceOptions::default(), TargetSource::DeviceNative),
        _ => (requested.clone(), TargetSource::Requested),
    };
    if let Some(s) = options.soc_model {
        match lookup(s) {
            Some(info) if !info.fp16 => {
                return Err(Error::Unsupported(format!(
                    "target {} cannot run fp16 graphs (the QNN HTP library reports \"SocModel \
                     doesn't support FP16\" for it) and quantized NPU graphs are not implemented; \
                     choose an fp16-capable target, e.g. --soc 57 (SM8650) or --soc 69 (SM8750)",
                    describe(s)
                )))
            }
            Some(_) => {}
            None => tracing::warn!(
                "SoC {s} is not in tandem's table of measured QNN targets; whether it runs fp16 \
                 graphs is up to the library's op validation"
            ),
        }
    } else if let Some(a) = options.arch {
        if a < 69 {
            return Err(Error::Unsupported(format!(
                "target HTP v{a} cannot run fp16 graphs (the QNN HTP library reports v68 parts as \
                 not supporting FP16); choose --soc 57 (SM8650) or --soc 69 (SM8750)"
            )));
        }
    }
    Ok(ResolvedTarget { options, source })
}

/// Whether the HTP library here is Qualcomm's x86_64 simulator (results are real, its timings
/// and cycle counts measure host emulation).
pub fn is_simulator() -> bool {
    cfg!(target_arch = "x86_64")
}

/// Whether this process can restore a context binary prepared with HTP weight sharing. On
/// x86_64 hosts it cannot: the simulator refuses one prepared natively ("Shared weights buffer
/// isn't supported on this platform", error 1000) and crashes (SIGSEGV inside
/// `contextCreateFromBinary`) on one prepared for a SoC — both measured with 2.51.0.
pub fn can_restore_shared_weights() -> bool {
    !cfg!(target_arch = "x86_64")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(soc: Option<u32>, arch: Option<u32>) -> DeviceOptions {
        DeviceOptions {
            soc_model: soc,
            arch,
        }
    }

    #[test]
    fn default_target_is_fp16_capable() {
        let t = resolve(&opts(None, None)).unwrap();
        if cfg!(target_arch = "x86_64") {
            assert_eq!(t.options.soc_model, Some(HOST_DEFAULT_SOC));
            assert_eq!(t.source, TargetSource::HostDefault);
            let info = lookup(HOST_DEFAULT_SOC).unwrap();
            assert!(info.fp16 && info.htp_arch >= 73, "{info:?}");
            assert!(t.describe().contains("SM8750"), "{}", t.describe());
        } else {
            assert_eq!(t.options, DeviceOptions::default());
            assert_eq!(t.source, TargetSource::DeviceNative);
        }
    }

    #[test]
    fn fp16_incapable_targets_are_refused_by_name() {
        for (soc, name) in [(30, "SM8350"), (68, "SM8635")] {
            let e = resolve(&opts(Some(soc), None)).unwrap_err().to_string();
            assert!(e.contains(name) && e.contains("fp16"), "{e}");
        }
        let e = resolve(&opts(None, Some(68))).unwrap_err().to_string();
        assert!(e.contains("v68"), "{e}");
        for soc in [43, 57, 69] {
            let t = resolve(&opts(Some(soc), None)).unwrap();
            assert_eq!(t.source, TargetSource::Requested);
            assert_eq!(t.options.soc_model, Some(soc));
        }
        assert!(resolve(&opts(Some(1234), None)).is_ok());
    }

    #[test]
    fn describe_names_part_and_arch() {
        assert_eq!(describe(57), "SM8650 (SoC 57, HTP v75)");
        assert_eq!(describe(52), "SoC 52 (HTP v73)");
        assert_eq!(describe(999), "SoC 999");
    }
}
