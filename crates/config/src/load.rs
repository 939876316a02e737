//! Reading, checking and defaulting: raw YAML structs in, [`Config`] out.

use std::borrow::Cow;
use std::collections::HashSet;
use std::path::Path;

use pharos_model::Duration;
use pharos_model::labels::{Labels, is_valid_label_name};
use pharos_model::matcher::Regex;
use pharos_model::relabel::{
    Action, DEFAULT_REGEX, DEFAULT_REPLACEMENT, DEFAULT_SEPARATOR, RelabelConfig,
    is_valid_target_template,
};
use serde_saphyr::Location;

use crate::expand::expand_env;
use crate::raw::{
    Opt, Pairs, RawConfig, RawGlobal, RawRelabelConfig, RawScrapeConfig, RawStaticConfig,
    RawStorage, Sp, Unsupported,
};
use crate::sd;
use crate::units::parse_bytes;
use crate::{
    Config, ConfigError, DEFAULT_PROTO_FIRST_SCRAPE_PROTOCOLS, DEFAULT_SCRAPE_PROTOCOLS,
    GlobalConfig, Position, SCRAPE_PROTOCOLS, ScrapeConfig, StaticConfig, StorageConfig,
};

/// Reads and loads the configuration file at `path`.
pub fn load_file(path: &Path) -> std::result::Result<Config, ConfigError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: name.clone(),
        source,
    })?;
    let mut config = load_str(&text, &name)?;
    let dir = path.parent().unwrap_or(Path::new(""));
    resolve_sd_paths(&mut config, dir);
    for p in &mut config.scrape_config_files {
        if Path::new(p.as_str()).is_relative() {
            *p = dir.join(p.as_str()).display().to_string();
        }
    }
    load_scrape_config_files(&mut config)?;
    Ok(config)
}

/// Appends the jobs of the files `scrape_config_files` matches, checked
/// against the main file's `global` section; errors are positioned in the
/// file that has the problem. A job name used twice names where it was
/// first found.
fn load_scrape_config_files(config: &mut Config) -> std::result::Result<(), ConfigError> {
    let mut first_found: std::collections::HashMap<String, String> = config
        .scrape_configs
        .iter()
        .map(|j| (j.job_name.clone(), "main config file".to_string()))
        .collect();
    for pat in config.scrape_config_files.clone() {
        let paths = glob::glob(&pat).map_err(|e| ConfigError::Invalid {
            file: pat.clone(),
            position: None,
            message: format!("error retrieving scrape config files for {pat:?}: {e}"),
        })?;
        let mut files: Vec<std::path::PathBuf> = paths.flatten().collect();
        files.sort();
        for file in files {
            let name = file.display().to_string();
            let text = std::fs::read_to_string(&file).map_err(|source| ConfigError::Read {
                path: name.clone(),
                source,
            })?;
            let cx = Cx { file: &name };
            let raw: Option<crate::raw::RawScrapeConfigsFile> =
                serde_saphyr::from_str(&text).map_err(|e| cx.yaml_error(&e))?;
            let mut jobs = Vec::new();
            for entry in raw.iter().flat_map(|r| r.scrape_configs.iter().flatten()) {
                let Some(sc) = &entry.value else {
                    return Err(cx.err(&entry.referenced, "empty or null scrape config section"));
                };
                let job = cx.scrape_config(sc, &entry.referenced, &config.global)?;
                if let Some(first) = first_found.get(&job.job_name) {
                    let loc = sc
                        .job_name
                        .as_ref()
                        .map_or(&entry.referenced, |j| &j.referenced);
                    return Err(cx.err(
                        loc,
                        format!(
                            "found multiple scrape configs with job name {:?}, first found in {first}",
                            job.job_name
                        ),
                    ));
                }
                first_found.insert(job.job_name.clone(), format!("{name:?}"));
                jobs.push(job);
            }
            let mut part = Config {
                scrape_configs: jobs,
                ..Config::default()
            };
            resolve_sd_paths(&mut part, file.parent().unwrap_or(Path::new("")));
            config.scrape_configs.extend(part.scrape_configs);
        }
    }
    Ok(())
}

/// Makes relative `file_sd_configs` paths relative to `dir` (the
/// configuration file's directory), as Prometheus does.
pub fn resolve_sd_paths(config: &mut Config, dir: &Path) {
    for job in &mut config.scrape_configs {
        for f in &mut job.file_sd_configs {
            for p in &mut f.files {
                if Path::new(p.as_str()).is_relative() {
                    *p = dir.join(p.as_str()).display().to_string();
                }
            }
        }
    }
}

/// Loads a configuration from its text. `filename` is only used in error
/// messages. `${VAR}` references in `external_labels` values are expanded
/// from the process environment.
pub fn load_str(text: &str, filename: &str) -> std::result::Result<Config, ConfigError> {
    load_with_env(text, filename, &|name| std::env::var(name).ok())
}

/// [`load_str`] with an explicit environment, for tests.
pub(crate) fn load_with_env(
    text: &str,
    filename: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> std::result::Result<Config, ConfigError> {
    let cx = Cx { file: filename };
    let raw: Option<RawConfig> = serde_saphyr::from_str(text).map_err(|e| cx.yaml_error(&e))?;
    let mut config = cx.config(raw, env)?;
    config.original = text.to_string();
    Ok(config)
}

/// The loading context: the file name for errors.
struct Cx<'a> {
    file: &'a str,
}

type Result<T> = std::result::Result<T, ConfigError>;

pub(crate) mod alerting;

fn position(loc: &Location) -> Option<Position> {
    (loc.line() > 0).then(|| Position {
        line: loc.line() as u32,
        column: loc.column() as u32,
    })
}

/// Checks a list of keys Prometheus has and pharos does not implement.
macro_rules! reject_unsupported {
    ($cx:expr, $raw:expr, [$($field:ident),* $(,)?]) => {
        $( $cx.unsupported(stringify!($field), &$raw.$field)?; )*
    };
}

impl Cx<'_> {
    fn err(&self, loc: &Location, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_string(),
            position: position(loc),
            message: message.into(),
        }
    }

    fn yaml_error(&self, e: &serde_saphyr::Error) -> ConfigError {
        let text = e.render_with_options(serde_saphyr::render_options! {
            formatter: &PlainMessage,
            snippets: serde_saphyr::SnippetMode::Off,
        });
        ConfigError::Invalid {
            file: self.file.to_string(),
            position: e.location().as_ref().and_then(position),
            message: rewrite_yaml_message(&text),
        }
    }

    fn unsupported(&self, key: &str, v: &Unsupported) -> Result<()> {
        match v {
            Some(s) => Err(self.err(&s.referenced, format!("{key} is not supported yet"))),
            None => Ok(()),
        }
    }

    /// A switch accepted only at the value pharos always behaves as.
    fn only_bool(&self, key: &str, v: &Opt<bool>, supported: bool) -> Result<()> {
        match v {
            Some(s) if s.value != supported => Err(self.err(
                &s.referenced,
                format!(
                    "{key}: {} is not supported yet (pharos always behaves as {key}: {supported})",
                    s.value
                ),
            )),
            _ => Ok(()),
        }
    }

    fn validation_scheme(&self, v: &Opt<String>) -> Result<()> {
        match v {
            Some(s) if !(s.value.is_empty() || s.value == "legacy") => Err(self.err(
                &s.referenced,
                format!(
                    "metric_name_validation_scheme: {:?} is not supported yet (pharos validates names with the legacy scheme)",
                    s.value
                ),
            )),
            _ => Ok(()),
        }
    }

    fn duration(&self, v: &Opt<String>) -> Result<Option<Duration>> {
        match v {
            None => Ok(None),
            Some(s) => Duration::parse(&s.value)
                .map(Some)
                .map_err(|e| self.err(&s.referenced, e.to_string())),
        }
    }

    fn bytes(&self, v: &Opt<String>) -> Result<u64> {
        match v {
            None => Ok(0),
            Some(s) => parse_bytes(&s.value).map_err(|e| self.err(&s.referenced, e)),
        }
    }

    fn label_pairs(
        &self,
        pairs: &Pairs,
        value: impl Fn(&str) -> String,
    ) -> Result<Vec<(String, String)>> {
        let mut out = Vec::with_capacity(pairs.0.len());
        for (k, v) in &pairs.0 {
            if !is_valid_label_name(&k.value) {
                return Err(self.err(
                    &k.referenced,
                    format!("{:?} is not a valid label name", k.value),
                ));
            }
            out.push((k.value.clone(), value(&v.value)));
        }
        Ok(out)
    }

    fn protocols(&self, v: &Opt<Vec<Sp<String>>>) -> Result<Option<Vec<String>>> {
        let Some(list) = v else {
            return Ok(None);
        };
        if list.value.is_empty() {
            return Err(self.err(&list.referenced, "scrape_protocols cannot be empty"));
        }
        let mut seen = HashSet::new();
        for p in &list.value {
            self.protocol(p)?;
            if !seen.insert(p.value.to_lowercase()) {
                let all: Vec<&str> = list.value.iter().map(|p| p.value.as_str()).collect();
                return Err(self.err(
                    &p.referenced,
                    format!(
                        "duplicated protocol in scrape_protocols, got [{}]",
                        all.join(" ")
                    ),
                ));
            }
        }
        Ok(Some(list.value.iter().map(|p| p.value.clone()).collect()))
    }

    fn protocol(&self, p: &Sp<String>) -> Result<()> {
        if SCRAPE_PROTOCOLS.contains(&p.value.as_str()) {
            return Ok(());
        }
        let mut known = SCRAPE_PROTOCOLS.to_vec();
        known.sort_unstable();
        Err(self.err(
            &p.referenced,
            format!(
                "unknown scrape protocol {:?}, supported: [{}]",
                p.value,
                known.join(" ")
            ),
        ))
    }

    fn config(
        &self,
        raw: Option<RawConfig>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config> {
        let Some(raw) = raw else {
            return Ok(Config::default());
        };
        reject_unsupported!(
            self,
            raw,
            [remote_write, remote_read, tracing, runtime, otlp,]
        );
        let global = match &raw.global {
            Some(g) => self.global(&g.value, env)?,
            None => GlobalConfig::default(),
        };
        let mut rule_files = Vec::new();
        for rf in raw.rule_files.iter().flatten() {
            if !is_valid_rule_path(&rf.value) {
                return Err(self.err(
                    &rf.referenced,
                    format!("invalid rule file path {:?}", rf.value),
                ));
            }
            rule_files.push(rf.value.clone());
        }
        let mut scrape_configs: Vec<ScrapeConfig> = Vec::new();
        for entry in raw.scrape_configs.iter().flatten() {
            let Some(sc) = &entry.value else {
                return Err(self.err(&entry.referenced, "empty or null scrape config section"));
            };
            let job = self.scrape_config(sc, &entry.referenced, &global)?;
            if scrape_configs.iter().any(|j| j.job_name == job.job_name) {
                let loc = sc
                    .job_name
                    .as_ref()
                    .map_or(&entry.referenced, |j| &j.referenced);
                return Err(self.err(
                    loc,
                    format!(
                        "found multiple scrape configs with job name {:?}",
                        job.job_name
                    ),
                ));
            }
            scrape_configs.push(job);
        }
        let alerting = self.alerting(raw.alerting.as_ref())?;
        let mut scrape_config_files = Vec::new();
        for p in raw.scrape_config_files.iter().flatten() {
            if !is_valid_rule_path(&p.value) {
                return Err(self.err(
                    &p.referenced,
                    format!("invalid scrape config file path {:?}", p.value),
                ));
            }
            scrape_config_files.push(p.value.clone());
        }
        let storage = self.storage(raw.storage.as_ref().map(|s| &s.value))?;
        Ok(Config {
            global,
            scrape_configs,
            rule_files,
            alerting,
            scrape_config_files,
            storage,
            original: String::new(),
        })
    }

    fn storage(&self, s: Option<&RawStorage>) -> Result<StorageConfig> {
        let mut out = StorageConfig::default();
        let Some(s) = s else {
            return Ok(out);
        };
        if let Some(e) = &s.exemplars
            && let Some(m) = &e.value.max_exemplars
        {
            out.max_exemplars = Some(m.value);
        }
        let Some(t) = &s.tsdb else {
            return Ok(out);
        };
        self.unsupported(
            "out_of_order_time_window",
            &t.value.out_of_order_time_window,
        )?;
        if let Some(r) = &t.value.retention {
            out.retention_time = self.duration(&r.value.time)?;
            if r.value.size.is_some() {
                out.retention_size = Some(self.bytes(&r.value.size)?);
            }
        }
        Ok(out)
    }

    fn global(&self, g: &RawGlobal, env: &dyn Fn(&str) -> Option<String>) -> Result<GlobalConfig> {
        reject_unsupported!(
            self,
            g,
            [
                query_log_file,
                scrape_failure_log_file,
                metric_name_escaping_scheme
            ]
        );
        self.only_bool("extra_scrape_metrics", &g.extra_scrape_metrics, false)?;
        self.validation_scheme(&g.metric_name_validation_scheme)?;
        let mut out = GlobalConfig::default();
        if let Some(d) = self.duration(&g.rule_query_offset)? {
            out.rule_query_offset = d;
        }
        if let Some(pairs) = &g.external_labels {
            let pairs = self.label_pairs(&pairs.value, |v| expand_env(v, env))?;
            out.external_labels = Labels::from_pairs(&pairs);
        }
        if let Some(d) = self.duration(&g.scrape_interval)?
            && d.0 != 0
        {
            out.scrape_interval = d;
        }
        match self.duration(&g.scrape_timeout)? {
            Some(t) if t.0 != 0 => {
                if t > out.scrape_interval
                    && let Some(s) = &g.scrape_timeout
                {
                    return Err(self.err(
                        &s.referenced,
                        "global scrape timeout greater than scrape interval",
                    ));
                }
                out.scrape_timeout = t;
            }
            _ => out.scrape_timeout = out.scrape_timeout.min(out.scrape_interval),
        }
        if let Some(d) = self.duration(&g.evaluation_interval)?
            && d.0 != 0
        {
            out.evaluation_interval = d;
        }
        if let Some(p) = self.protocols(&g.scrape_protocols)? {
            out.scrape_protocols = p;
        }
        out.body_size_limit = self.bytes(&g.body_size_limit)?;
        out.sample_limit = value_or(&g.sample_limit, 0);
        out.label_limit = value_or(&g.label_limit, 0);
        out.label_name_length_limit = value_or(&g.label_name_length_limit, 0);
        out.label_value_length_limit = value_or(&g.label_value_length_limit, 0);
        out.target_limit = value_or(&g.target_limit, 0);
        out.keep_dropped_targets = value_or(&g.keep_dropped_targets, 0);
        out.convert_classic_histograms_to_nhcb =
            value_or(&g.convert_classic_histograms_to_nhcb, false);
        out.always_scrape_classic_histograms = value_or(&g.always_scrape_classic_histograms, false);
        out.scrape_native_histograms = value_or(&g.scrape_native_histograms, false);
        Ok(out)
    }

    fn scrape_config(
        &self,
        r: &RawScrapeConfig,
        at: &Location,
        global: &GlobalConfig,
    ) -> Result<ScrapeConfig> {
        let job_name = match &r.job_name {
            Some(j) => match &j.value {
                Some(name) if !name.is_empty() => name.clone(),
                _ => return Err(self.err(&j.referenced, "job_name is empty")),
            },
            None => return Err(self.err(at, "job_name is empty")),
        };
        reject_unsupported!(
            self,
            r,
            [
                scrape_failure_log_file,
                metric_name_escaping_scheme,
                azure_sd_configs,
                consul_sd_configs,
                digitalocean_sd_configs,
                docker_sd_configs,
                dockerswarm_sd_configs,
                ec2_sd_configs,
                eureka_sd_configs,
                gce_sd_configs,
                hetzner_sd_configs,
                ionos_sd_configs,
                kuma_sd_configs,
                lightsail_sd_configs,
                linode_sd_configs,
                marathon_sd_configs,
                nerve_sd_configs,
                nomad_sd_configs,
                openstack_sd_configs,
                ovhcloud_sd_configs,
                puppetdb_sd_configs,
                scaleway_sd_configs,
                serverset_sd_configs,
                stackit_sd_configs,
                triton_sd_configs,
                uyuni_sd_configs,
                vultr_sd_configs,
            ]
        );
        self.only_bool(
            "track_timestamps_staleness",
            &r.track_timestamps_staleness,
            false,
        )?;
        self.only_bool("extra_scrape_metrics", &r.extra_scrape_metrics, false)?;
        self.validation_scheme(&r.metric_name_validation_scheme)?;

        let mut out = ScrapeConfig::new(&job_name, global);

        // Relabel rules and static targets are checked while decoding in
        // Prometheus, before the interval checks.
        let relabel_configs = self.relabel_list(
            r.relabel_configs.as_deref(),
            "empty or null target relabeling rule in scrape config",
        )?;
        let metric_relabel_configs = self.relabel_list(
            r.metric_relabel_configs.as_deref(),
            "empty or null metric relabeling rule in scrape config",
        )?;
        for entry in r.static_configs.iter().flatten() {
            let Some(sc) = &entry.value else {
                return Err(self.err(&entry.referenced, "empty or null section in static_configs"));
            };
            out.static_configs
                .push(self.static_config(sc, relabel_configs.is_empty())?);
        }
        out.relabel_configs = relabel_configs;
        out.metric_relabel_configs = metric_relabel_configs;
        let positioned = |(loc, msg): (Location, String)| self.err(&loc, msg);
        out.file_sd_configs = sd::list(
            &r.file_sd_configs,
            "empty or null section in file_sd_configs",
            sd::file_sd,
        )
        .map_err(positioned)?;
        out.http_sd_configs = sd::list(
            &r.http_sd_configs,
            "empty or null section in http_sd_configs",
            sd::http_sd,
        )
        .map_err(positioned)?;
        out.http_client =
            crate::http::http_client(&crate::raw::http_client_ref!(r), at).map_err(positioned)?;
        out.kubernetes_sd_configs = sd::list(
            &r.kubernetes_sd_configs,
            "empty or null section in kubernetes_sd_configs",
            sd::kubernetes_sd,
        )
        .map_err(positioned)?;
        out.dns_sd_configs = sd::list(
            &r.dns_sd_configs,
            "empty or null section in dns_sd_configs",
            sd::dns_sd,
        )
        .map_err(positioned)?;

        if let Some(d) = self.duration(&r.scrape_interval)?
            && d.0 != 0
        {
            out.scrape_interval = d;
        }
        match self.duration(&r.scrape_timeout)? {
            Some(t) if t.0 != 0 => {
                if t > out.scrape_interval
                    && let Some(s) = &r.scrape_timeout
                {
                    return Err(self.err(
                        &s.referenced,
                        format!(
                            "scrape timeout greater than scrape interval for scrape config with job name {job_name:?}"
                        ),
                    ));
                }
                out.scrape_timeout = t;
            }
            _ => out.scrape_timeout = global.scrape_timeout.min(out.scrape_interval),
        }

        if let Some(p) = &r.metrics_path {
            out.metrics_path = p.value.clone();
        }
        if let Some(s) = &r.scheme {
            if s.value != "http" && s.value != "https" {
                return Err(self.err(
                    &s.referenced,
                    format!(
                        "invalid scheme {:?}: must be \"http\" or \"https\"",
                        s.value
                    ),
                ));
            }
            out.scheme = s.value.clone();
        }
        if let Some(p) = &r.params {
            out.params = p.value.clone();
        }
        out.honor_labels = value_or(&r.honor_labels, false);
        out.honor_timestamps = value_or(&r.honor_timestamps, true);
        out.convert_classic_histograms_to_nhcb = value_or(
            &r.convert_classic_histograms_to_nhcb,
            global.convert_classic_histograms_to_nhcb,
        );
        out.always_scrape_classic_histograms = value_or(
            &r.always_scrape_classic_histograms,
            global.always_scrape_classic_histograms,
        );

        out.scrape_native_histograms =
            value_or(&r.scrape_native_histograms, global.scrape_native_histograms);
        out.native_histogram_bucket_limit = value_or(&r.native_histogram_bucket_limit, 0);
        out.native_histogram_min_bucket_factor =
            value_or(&r.native_histogram_min_bucket_factor, 0.0);
        if let Some(f) = &r.native_histogram_min_bucket_factor
            && !(f.value >= 0.0 && f.value.is_finite())
        {
            return Err(self.err(
                &f.referenced,
                format!(
                    "native_histogram_min_bucket_factor must be a finite number >= 0, got {}",
                    f.value
                ),
            ));
        }

        // Prometheus: the job's list, else the global one, else the
        // proto-first list when the job scrapes native histograms.
        if let Some(p) = self.protocols(&r.scrape_protocols)? {
            out.scrape_protocols = p;
        } else if global.scrape_protocols.is_empty() {
            out.scrape_protocols = if out.scrape_native_histograms {
                DEFAULT_PROTO_FIRST_SCRAPE_PROTOCOLS
                    .map(String::from)
                    .to_vec()
            } else {
                DEFAULT_SCRAPE_PROTOCOLS.map(String::from).to_vec()
            };
        }
        if let Some(p) = &r.fallback_scrape_protocol
            && !p.value.is_empty()
        {
            self.protocol(p)?;
            out.fallback_scrape_protocol = Some(p.value.clone());
        }

        let body = self.bytes(&r.body_size_limit)?;
        if body != 0 {
            out.body_size_limit = body;
        }
        inherit(&mut out.sample_limit, &r.sample_limit);
        inherit(&mut out.label_limit, &r.label_limit);
        inherit(&mut out.label_name_length_limit, &r.label_name_length_limit);
        inherit(
            &mut out.label_value_length_limit,
            &r.label_value_length_limit,
        );
        out.enable_compression = value_or(&r.enable_compression, true);
        inherit(&mut out.target_limit, &r.target_limit);
        inherit(&mut out.keep_dropped_targets, &r.keep_dropped_targets);
        Ok(out)
    }

    fn static_config(&self, r: &RawStaticConfig, check_targets: bool) -> Result<StaticConfig> {
        let mut out = StaticConfig::default();
        for t in r.targets.iter().flatten() {
            if check_targets && t.value.contains('/') {
                return Err(self.err(
                    &t.referenced,
                    format!("{:?} is not a valid hostname", t.value),
                ));
            }
            out.targets.push(t.value.clone());
        }
        if let Some(pairs) = &r.labels {
            let pairs = self.label_pairs(&pairs.value, str::to_string)?;
            out.labels = Labels::from_pairs(&pairs);
        }
        Ok(out)
    }

    fn relabel_list(
        &self,
        list: Option<&[Sp<Option<RawRelabelConfig>>]>,
        null_message: &str,
    ) -> Result<Vec<RelabelConfig>> {
        let mut out = Vec::new();
        for entry in list.unwrap_or_default() {
            let Some(r) = &entry.value else {
                return Err(self.err(&entry.referenced, null_message));
            };
            out.push(self.relabel(r, &entry.referenced)?);
        }
        Ok(out)
    }

    /// Converts and checks one rule, in the order Prometheus checks.
    fn relabel(&self, r: &RawRelabelConfig, at: &Location) -> Result<RelabelConfig> {
        let mut c = RelabelConfig::default();
        let loc_of = |s: Option<&Location>| *s.unwrap_or(at);

        let mut source_specified = false;
        if let Some(sl) = &r.source_labels
            && let Some(names) = &sl.value
        {
            source_specified = true;
            for n in names {
                if !is_valid_label_name(&n.value) {
                    return Err(self.err(
                        &n.referenced,
                        format!("{:?} is not a valid label name", n.value),
                    ));
                }
                c.source_labels.push(n.value.clone());
            }
        }
        if let Some(s) = &r.separator {
            c.separator = s.value.clone();
        }
        if let Some(re) = &r.regex {
            let pattern = re.value.as_deref().unwrap_or("");
            c.regex = compile_regex(pattern).map_err(|e| self.err(&re.referenced, e))?;
        }
        if let Some(m) = &r.modulus {
            c.modulus = m.value;
        }
        if let Some(t) = &r.target_label {
            c.target_label = t.value.clone();
        }
        if let Some(t) = &r.replacement {
            c.replacement = t.value.clone();
        }
        let action_loc = loc_of(r.action.as_ref().map(|a| &a.referenced));
        if let Some(a) = &r.action {
            match a.value.as_deref() {
                None => return Err(self.err(&action_loc, "relabel action cannot be empty")),
                Some(name) => {
                    c.action = Action::parse(name).ok_or_else(|| {
                        self.err(&action_loc, format!("unknown relabel action {name:?}"))
                    })?;
                }
            }
        }

        let action = c.action;
        let target_loc = loc_of(r.target_label.as_ref().map(|t| &t.referenced));
        let replacement_loc = loc_of(r.replacement.as_ref().map(|t| &t.referenced));
        let modulus_loc = loc_of(r.modulus.as_ref().map(|t| &t.referenced));
        let invalid_target = || {
            self.err(
                &target_loc,
                format!(
                    "{:?} is invalid 'target_label' for {action} action",
                    c.target_label
                ),
            )
        };

        if action == Action::HashMod && c.modulus == 0 {
            return Err(self.err(
                &modulus_loc,
                "relabel configuration for hashmod requires non-zero modulus",
            ));
        }
        let needs_target = matches!(
            action,
            Action::Replace
                | Action::HashMod
                | Action::Lowercase
                | Action::Uppercase
                | Action::KeepEqual
                | Action::DropEqual
        );
        if needs_target && c.target_label.is_empty() {
            return Err(self.err(
                &target_loc,
                format!("relabel configuration for {action} action requires 'target_label' value"),
            ));
        }
        if action == Action::Replace {
            let ok = if c.target_label.contains('$') {
                is_valid_target_template(&c.target_label)
            } else {
                is_valid_label_name(&c.target_label)
            };
            if !ok {
                return Err(invalid_target());
            }
        }
        let plain_target = matches!(
            action,
            Action::Lowercase | Action::Uppercase | Action::KeepEqual | Action::DropEqual
        );
        if plain_target && !is_valid_label_name(&c.target_label) {
            return Err(invalid_target());
        }
        if plain_target && c.replacement != DEFAULT_REPLACEMENT {
            return Err(self.err(
                &replacement_loc,
                format!("'replacement' can not be set for {action} action"),
            ));
        }
        if action == Action::LabelMap && !is_valid_target_template(&c.replacement) {
            return Err(self.err(
                &replacement_loc,
                format!(
                    "{:?} is invalid 'replacement' for labelmap action",
                    c.replacement
                ),
            ));
        }
        if action == Action::HashMod && !is_valid_label_name(&c.target_label) {
            return Err(invalid_target());
        }
        if matches!(action, Action::KeepEqual | Action::DropEqual) {
            // Any explicit regex counts, even the default one, as in
            // Prometheus.
            let offending = [
                r.regex.as_ref().map(|s| s.referenced),
                (c.modulus != 0).then_some(modulus_loc),
                (c.separator != DEFAULT_SEPARATOR)
                    .then(|| r.separator.as_ref().map(|s| s.referenced))
                    .flatten(),
                (c.replacement != DEFAULT_REPLACEMENT).then_some(replacement_loc),
            ]
            .into_iter()
            .flatten()
            .next();
            if let Some(loc) = offending {
                return Err(self.err(
                    &loc,
                    format!(
                        "{action} action requires only 'source_labels' and `target_label`, and no other fields"
                    ),
                ));
            }
        }
        if matches!(action, Action::LabelDrop | Action::LabelKeep) {
            let offending = [
                source_specified
                    .then(|| r.source_labels.as_ref().map(|s| s.referenced))
                    .flatten(),
                (!c.target_label.is_empty()).then_some(target_loc),
                (c.modulus != 0).then_some(modulus_loc),
                (c.separator != DEFAULT_SEPARATOR)
                    .then(|| r.separator.as_ref().map(|s| s.referenced))
                    .flatten(),
                (c.replacement != DEFAULT_REPLACEMENT).then_some(replacement_loc),
            ]
            .into_iter()
            .flatten()
            .next();
            if let Some(loc) = offending {
                return Err(self.err(
                    &loc,
                    format!("{action} action requires only 'regex', and no other fields"),
                ));
            }
        }
        Ok(c)
    }
}

fn value_or<T: Copy>(v: &Opt<T>, default: T) -> T {
    v.as_ref().map_or(default, |s| s.value)
}

/// A job limit left at 0 keeps the global value.
fn inherit(target: &mut u64, v: &Opt<u64>) {
    if let Some(s) = v
        && s.value != 0
    {
        *target = s.value;
    }
}

/// Compiles a relabel regex; the error is one line naming the pattern.
fn compile_regex(pattern: &str) -> std::result::Result<Regex, String> {
    if pattern == DEFAULT_REGEX {
        return Ok(RelabelConfig::default().regex);
    }
    Regex::new(pattern).map_err(|e| {
        let detail = e.source.to_string();
        let reason = detail
            .lines()
            .rev()
            .find_map(|l| l.trim().strip_prefix("error: "))
            .map_or_else(
                || detail.split_whitespace().collect::<Vec<_>>().join(" "),
                str::to_string,
            );
        format!("error parsing regexp {pattern:?}: {reason}")
    })
}

/// Prometheus's rule path rule `^[^*]*(\*[^/]*)?$`: after the first `*`
/// there is no `/`.
fn is_valid_rule_path(p: &str) -> bool {
    match p.find('*') {
        None => true,
        Some(i) => !p[i + 1..].contains('/'),
    }
}

/// Renders serde-saphyr messages without their location suffix (our own
/// prefix carries the position).
struct PlainMessage;
struct NoLocation;

impl serde_saphyr::Localizer for NoLocation {
    fn attach_location<'a>(&self, base: Cow<'a, str>, _loc: Location) -> Cow<'a, str> {
        base
    }
    fn alias_defined_at(&self, _defined: Location) -> String {
        String::new()
    }
    fn alias_used_at(&self, _used: Location) -> String {
        String::new()
    }
}

impl serde_saphyr::MessageFormatter for PlainMessage {
    fn localizer(&self) -> &dyn serde_saphyr::Localizer {
        &NoLocation
    }
    fn format_message<'a>(&self, err: &'a serde_saphyr::Error) -> Cow<'a, str> {
        serde_saphyr::MessageFormatter::format_message(&serde_saphyr::DefaultMessageFormatter, err)
    }
}

/// Makes the parser's wording fit a configuration file: shorter unknown-field
/// messages with a suggestion, no API hints.
fn rewrite_yaml_message(msg: &str) -> String {
    let msg = msg.trim();
    if let Some(rest) = msg.strip_prefix("unknown field `")
        && let Some((name, tail)) = rest.split_once('`')
    {
        let candidates: Vec<&str> = tail
            .split_once("expected one of ")
            .map(|(_, list)| list.split(", ").map(|s| s.trim_matches('`')).collect())
            .unwrap_or_default();
        return match closest(name, &candidates) {
            Some(c) => format!("unknown field {name:?} (did you mean {c:?}?)"),
            None => format!("unknown field {name:?}"),
        };
    }
    if let Some(rest) = msg.strip_prefix("duplicate mapping key: ") {
        let key = rest
            .split(", set DuplicateKeyPolicy")
            .next()
            .unwrap_or(rest);
        return format!("duplicate key {key:?}");
    }
    if msg.starts_with("budget breached") {
        return format!("YAML too large or too many aliases ({msg})");
    }
    if msg.starts_with("multiple YAML documents detected") {
        return "multiple YAML documents in one file are not supported".to_string();
    }
    let plain = match msg {
        "invalid u64" => "expected a non-negative integer",
        "expected string scalar" => "expected a string",
        "expected sequence start" => "expected a list",
        "expected mapping start" => "expected a mapping",
        other => other,
    };
    plain.to_string()
}

/// The candidate nearest to `name` by edit distance, if near enough to be a
/// likely typo.
fn closest<'a>(name: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).clamp(1, 3);
    candidates
        .iter()
        .map(|c| (edit_distance(name, c), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}
