//! keepalived.conf for `cache-node vrrp`: the subset that a bare-metal keepalived + memcached
//! pair uses, so that operators keep the file they have.
//!
//! Reading goes in two steps. [`tokenize`] turns the text into words and braces, and
//! [`read_block`] groups them into statements — one line each, keepalived's unit — with their
//! nested `{ … }` blocks. Then `parse_global`, `parse_script` and `parse_instance` walk those
//! blocks.
//!
//! As keepalived does, an unknown keyword is skipped (with its block) and reported in
//! [`Config::warnings`]. Unlike keepalived, a keyword that we would have to ignore although it
//! changes what the speaker does (unicast, VMACs, sync groups, includes, …) is an error, and so
//! are the contradictions that keepalived repairs with a log line and carries on (a fractional
//! `advert_int` under VRRPv2, mixed address families, a `track_script` naming no script).

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Everything `cache-node vrrp` takes from a keepalived.conf.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub global: Global,
    pub scripts: Vec<Script>,
    pub instances: Vec<Instance>,
    /// Unknown keywords that were skipped and settings that were adjusted, each with its line
    /// number, for the caller to log.
    pub warnings: Vec<String>,
}

/// `global_defs`.
#[derive(Debug, Clone, PartialEq)]
pub struct Global {
    pub router_id: Option<String>,
    /// 2 or 3; instances without a `version` of their own use it, except IPv6 ones (always 3).
    pub vrrp_version: u8,
    pub enable_script_security: bool,
    /// `script_user USER [GROUP]`.
    pub script_user: Option<(String, Option<String>)>,
    /// The `vrrp_garp_*` and `vrrp_gna_interval` defaults.
    pub garp: Garp,
}

impl Default for Global {
    fn default() -> Self {
        Self {
            router_id: None,
            vrrp_version: 2,
            enable_script_security: false,
            script_user: None,
            garp: Garp::default(),
        }
    }
}

/// Gratuitous ARP / unsolicited neighbour advertisement timing, with keepalived's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct Garp {
    /// Delay of the second burst after becoming master; zero: no second burst.
    pub master_delay: Duration,
    /// Messages per burst.
    pub master_repeat: u32,
    /// Period of refresh bursts while master; `None`: no refresh.
    pub master_refresh: Option<Duration>,
    pub master_refresh_repeat: u32,
    /// Pause between two ARPs / two NAs on an interface.
    pub interval: Duration,
    pub gna_interval: Duration,
}

impl Default for Garp {
    fn default() -> Self {
        Self {
            master_delay: Duration::from_secs(5),
            master_repeat: 5,
            master_refresh: None,
            master_refresh_repeat: 1,
            interval: Duration::ZERO,
            gna_interval: Duration::ZERO,
        }
    }
}

/// `vrrp_script NAME { … }`.
#[derive(Debug, Clone, PartialEq)]
pub struct Script {
    pub name: String,
    /// The words after `script`, joined by one space; a quoted word keeps its inner spaces and
    /// any single quotes (keepalived splits this into arguments, `'…'` grouping).
    pub command: String,
    pub interval: Duration,
    /// `None`: the interval, as in keepalived.
    pub timeout: Option<Duration>,
    pub weight: i32,
    pub fall: u32,
    pub rise: u32,
    /// `user USER [GROUP]`; `None`: the global `script_user`.
    pub user: Option<(String, Option<String>)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitialState {
    Master,
    Backup,
}

/// One `virtual_ipaddress` line.
#[derive(Debug, Clone, PartialEq)]
pub struct VirtualAddress {
    pub addr: IpAddr,
    /// 32 or 128 when not given.
    pub prefix: u8,
    /// `None`: the instance's interface.
    pub dev: Option<String>,
}

/// One line of `track_script` or `track_interface`.
#[derive(Debug, Clone, PartialEq)]
pub struct Track {
    pub name: String,
    /// `None`: the script's own weight; for an interface, going to FAULT when it is down.
    pub weight: Option<i32>,
}

/// The notify scripts, as written (quotes removed).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Notify {
    pub master: Option<String>,
    pub backup: Option<String>,
    pub fault: Option<String>,
    pub stop: Option<String>,
    /// `notify`: run on every transition.
    pub any: Option<String>,
}

/// `vrrp_instance NAME { … }`.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    pub name: String,
    /// When not given, as keepalived: MASTER if the priority is 255, else BACKUP.
    pub state: InitialState,
    pub interface: String,
    pub virtual_router_id: u8,
    /// 1..=255, 255 meaning the address owner. When not given, as keepalived: 255 if the state
    /// is MASTER, else 100.
    pub priority: u8,
    pub advert_int: Duration,
    /// The instance's `version`, else 3 for IPv6 addresses, else the global `vrrp_version`.
    pub vrrp_version: u8,
    pub nopreempt: bool,
    pub preempt_delay: Duration,
    /// `authentication { auth_type PASS; auth_pass … }`, truncated to 8 bytes as keepalived does.
    pub password: Option<Vec<u8>>,
    /// Non-empty, all of one family.
    pub virtual_ipaddress: Vec<VirtualAddress>,
    pub track_script: Vec<Track>,
    pub track_interface: Vec<Track>,
    pub notify: Notify,
    /// The global defaults with the instance's `garp_master_*` over them.
    pub garp: Garp,
    pub mcast_src_ip: Option<IpAddr>,
}

/// Why a keepalived.conf was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    /// Broken structure: braces that do not pair up, an unterminated quote.
    #[error("keepalived.conf line {line}: {token} {problem}")]
    Syntax { line: usize, token: String, problem: &'static str },
    /// A keyword without its value, or a block without a keyword it needs.
    #[error("keepalived.conf line {line}: {keyword} needs {what}")]
    Missing { line: usize, keyword: String, what: &'static str },
    /// A value that does not parse, is out of range, or contradicts another setting.
    #[error("keepalived.conf line {line}: {keyword} {value} {problem}")]
    Invalid { line: usize, keyword: String, value: String, problem: String },
    /// A keepalived feature that changes behaviour and that we do not implement.
    #[error("keepalived.conf line {line}: {keyword}: cache-node vrrp does not support it")]
    Unsupported { line: usize, keyword: String },
    /// A second definition of something that must be unique.
    #[error("keepalived.conf line {line}: {keyword} {name} is already defined at line {first}")]
    Duplicate { line: usize, keyword: String, name: String, first: usize },
}

/// Keywords that change what keepalived does and that `cache-node vrrp` does not implement:
/// skipping them, as unknown keywords are, would silently run something else.
const UNSUPPORTED: &[&str] = &[
    "unicast_peer",
    "unicast_src_ip",
    "virtual_ipaddress_excluded",
    "use_vmac",
    "use_ipvlan",
    "vrrp_sync_group",
    "track_file",
    "track_process",
    "track_bfd",
    "virtual_routes",
    "virtual_rules",
    "mcast_dst_ip",
    "vrrp_mcast_group4",
    "vrrp_mcast_group6",
];

/// keepalived's track weights, `vrrp_script` and `track_*` alike.
const MAX_WEIGHT: i64 = 253;
const DEFAULT_PRIORITY: u8 = 100;
const OWNER_PRIORITY: u8 = 255;
/// VRRPv2 simple authentication carries 8 bytes.
const PASSWORD_LEN: usize = 8;
const MAX_PREEMPT_DELAY: Duration = Duration::from_secs(1000);
/// keepalived nests four deep at most; the limit keeps hostile input off the stack.
const MAX_DEPTH: usize = 16;

/// Reads the file at `path` (and nothing else: `include` is refused) and parses it.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io { path: path.to_owned(), source })?;
    parse(&text)
}

/// Parses keepalived.conf text.
pub fn parse(text: &str) -> Result<Config, ConfigError> {
    let statements = read_block(&mut tokenize(text)?.into_iter().peekable(), None, 0)?;
    let mut warnings = Vec::new();
    let mut global = Global::default();
    let mut scripts: Vec<Script> = Vec::new();
    let mut script_lines = HashMap::new();
    // Instances come last: they need every script and the global defaults, wherever those are.
    for s in &statements {
        match s.keyword.as_str() {
            "global_defs" => parse_global(s, &mut global, &mut warnings)?,
            "vrrp_script" => {
                let script = parse_script(s, &mut warnings)?;
                if let Some(&first) = script_lines.get(&script.name) {
                    return Err(duplicate(s, &script.name, first));
                }
                script_lines.insert(script.name.clone(), s.line);
                scripts.push(script);
            }
            "vrrp_instance" => {}
            _ => other(s, &mut warnings)?,
        }
    }
    let mut instances: Vec<Instance> = Vec::new();
    let mut instance_lines = HashMap::new();
    let mut vrid_lines = HashMap::new();
    for s in statements.iter().filter(|s| s.keyword == "vrrp_instance") {
        let (instance, vrid_line) = parse_instance(s, &global, &scripts, &mut warnings)?;
        if let Some(&first) = instance_lines.get(&instance.name) {
            return Err(duplicate(s, &instance.name, first));
        }
        instance_lines.insert(instance.name.clone(), s.line);
        // Adverts of two such instances would be indistinguishable on the wire.
        let ipv6 = instance.virtual_ipaddress.first().is_some_and(|vip| vip.addr.is_ipv6());
        let family = if ipv6 { "IPv6" } else { "IPv4" };
        let key = format!("{} on {} ({family})", instance.virtual_router_id, instance.interface);
        if let Some(&first) = vrid_lines.get(&key) {
            return Err(ConfigError::Duplicate {
                line: vrid_line,
                keyword: "virtual_router_id".into(),
                name: key,
                first,
            });
        }
        vrid_lines.insert(key, vrid_line);
        instances.push(instance);
    }
    if instances.is_empty() {
        let line = text.lines().count().max(1);
        return Err(ConfigError::Missing { line, keyword: "the file".into(), what: "a vrrp_instance" });
    }
    Ok(Config { global, scripts, instances, warnings })
}

#[derive(Debug, PartialEq)]
enum Token {
    Word(String),
    Open,
    Close,
}

/// Words and braces, each with its line number. Braces stand alone even when they touch a word;
/// `#` and `!` start a comment anywhere outside quotes; `"…"` joins words, quotes removed.
fn tokenize(text: &str) -> Result<Vec<(usize, Token)>, ConfigError> {
    let mut tokens = Vec::new();
    for (index, content) in text.lines().enumerate() {
        let line = index + 1;
        // `Some` once a word has begun, so that `""` is an (empty) word.
        let mut word: Option<String> = None;
        let mut quoted = false;
        for c in content.chars() {
            if quoted {
                match c {
                    '"' => quoted = false,
                    c => word.get_or_insert_default().push(c),
                }
                continue;
            }
            match c {
                '"' => {
                    quoted = true;
                    word.get_or_insert_default();
                }
                '#' | '!' => break,
                '{' | '}' => {
                    tokens.extend(word.take().map(|w| (line, Token::Word(w))));
                    tokens.push((line, if c == '{' { Token::Open } else { Token::Close }));
                }
                c if c.is_whitespace() => tokens.extend(word.take().map(|w| (line, Token::Word(w)))),
                c => word.get_or_insert_default().push(c),
            }
        }
        if quoted {
            let token = word.unwrap_or_default();
            return Err(ConfigError::Syntax { line, token: format!("\"{token}"), problem: "has no closing quote" });
        }
        tokens.extend(word.map(|w| (line, Token::Word(w))));
    }
    Ok(tokens)
}

/// One line: a keyword, its arguments, and the `{ … }` block that follows it on the same line
/// or the next.
#[derive(Debug)]
struct Stmt {
    line: usize,
    keyword: String,
    args: Vec<String>,
    block: Option<Vec<Stmt>>,
}

type Tokens = std::iter::Peekable<std::vec::IntoIter<(usize, Token)>>;

/// The statements up to the `}` that closes the block opened by `opener` (its line and
/// keyword), or up to the end of the text at the top level.
fn read_block(tokens: &mut Tokens, opener: Option<(usize, &str)>, depth: usize) -> Result<Vec<Stmt>, ConfigError> {
    let mut statements = Vec::new();
    while let Some((line, token)) = tokens.next() {
        let keyword = match token {
            Token::Word(word) => word,
            Token::Close if opener.is_some() => return Ok(statements),
            Token::Close => return Err(ConfigError::Syntax { line, token: "}".into(), problem: "closes no block" }),
            Token::Open => return Err(ConfigError::Syntax { line, token: "{".into(), problem: "follows no keyword" }),
        };
        let mut args = Vec::new();
        while let Some((_, Token::Word(word))) = tokens.next_if(|(l, t)| *l == line && matches!(t, Token::Word(_))) {
            args.push(word);
        }
        let block = match tokens.next_if(|(_, t)| *t == Token::Open) {
            Some(_) if depth == MAX_DEPTH => {
                return Err(ConfigError::Syntax { line, token: keyword, problem: "nests blocks too deeply" });
            }
            Some(_) => Some(read_block(tokens, Some((line, &keyword)), depth + 1)?),
            None => None,
        };
        statements.push(Stmt { line, keyword, args, block });
    }
    match opener {
        Some((line, keyword)) => {
            Err(ConfigError::Syntax { line, token: keyword.to_owned(), problem: "opens a block that is never closed" })
        }
        None => Ok(statements),
    }
}

impl Stmt {
    /// The one argument of `keyword VALUE`.
    fn value(&self) -> Result<&str, ConfigError> {
        if self.block.is_some() {
            return Err(ConfigError::Syntax {
                line: self.line,
                token: self.keyword.clone(),
                problem: "takes no block",
            });
        }
        match self.args.as_slice() {
            [value] => Ok(value),
            [] => Err(self.missing("a value")),
            [_, extra @ ..] => Err(self.invalid(&extra.join(" "), "is more than the one value it takes")),
        }
    }

    /// The `NAME` of `keyword NAME { … }`.
    fn name(&self) -> Result<&str, ConfigError> {
        match self.args.as_slice() {
            [name] => Ok(name),
            [] => Err(self.missing("a name")),
            [_, extra @ ..] => Err(self.invalid(&extra.join(" "), "is more than the one name it takes")),
        }
    }

    fn block(&self) -> Result<&[Stmt], ConfigError> {
        self.block.as_deref().ok_or_else(|| self.missing("a { } block"))
    }

    /// `keyword USER [GROUP]`.
    fn user(&self) -> Result<(String, Option<String>), ConfigError> {
        match self.args.as_slice() {
            [user] => Ok((user.clone(), None)),
            [user, group] => Ok((user.clone(), Some(group.clone()))),
            [] => Err(self.missing("a user")),
            [_, _, extra @ ..] => Err(self.invalid(&extra.join(" "), "is more than USER [GROUP]")),
        }
    }

    /// A notify script: keepalived's `notify_* SCRIPT [USER [GROUP]]`, less the user.
    fn notify_script(&self) -> Result<String, ConfigError> {
        match self.args.as_slice() {
            [script] => Ok(script.clone()),
            [] => Err(self.missing("a script")),
            _ => Err(ConfigError::Unsupported { line: self.line, keyword: format!("{} with a user", self.keyword) }),
        }
    }

    fn number<T: TryFrom<i64>>(&self, min: i64, max: i64) -> Result<T, ConfigError> {
        number(self.line, &self.keyword, self.value()?, min, max)
    }

    /// keepalived's whole-second timers (`interval`, `timeout`, `garp_master_delay`, …).
    fn whole_seconds(&self, min: i64) -> Result<Duration, ConfigError> {
        self.number(min, i64::from(u32::MAX)).map(Duration::from_secs)
    }

    /// keepalived's <TIMER>: decimal seconds with microsecond resolution, e.g. `2` or `0.25`.
    fn seconds(&self) -> Result<Duration, ConfigError> {
        let text = self.value()?;
        let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        let not_seconds = || self.invalid(text, "is not a number of seconds such as 2 or 0.25 (at most 6 decimals)");
        if (whole.is_empty() && fraction.is_empty()) || !digits(whole) || !digits(fraction) || fraction.len() > 6 {
            return Err(not_seconds());
        }
        let secs = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| not_seconds())? };
        let micros: u32 = format!("{fraction:0<6}").parse().map_err(|_| not_seconds())?;
        Ok(Duration::new(secs, micros * 1000))
    }

    fn ip(&self) -> Result<IpAddr, ConfigError> {
        let text = self.value()?;
        text.parse().map_err(|_| self.invalid(text, "is not an IP address"))
    }

    fn missing(&self, what: &'static str) -> ConfigError {
        ConfigError::Missing { line: self.line, keyword: self.keyword.clone(), what }
    }

    fn invalid(&self, value: &str, problem: impl Into<String>) -> ConfigError {
        invalid(self.line, &self.keyword, value, problem)
    }
}

fn invalid(line: usize, keyword: &str, value: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { line, keyword: keyword.into(), value: value.into(), problem: problem.into() }
}

fn duplicate(s: &Stmt, name: &str, first: usize) -> ConfigError {
    ConfigError::Duplicate { line: s.line, keyword: s.keyword.clone(), name: name.into(), first }
}

/// An integer in `min..=max`.
fn number<T: TryFrom<i64>>(line: usize, keyword: &str, text: &str, min: i64, max: i64) -> Result<T, ConfigError> {
    let n: i64 = text.parse().map_err(|_| invalid(line, keyword, text, "is not a whole number"))?;
    (min..=max)
        .contains(&n)
        .then(|| T::try_from(n).ok())
        .flatten()
        .ok_or_else(|| invalid(line, keyword, text, format!("is out of range {min}..={max}")))
}

/// A keyword that we do not read: an error if it changes behaviour, else skipped with a
/// warning, as keepalived skips the keywords it does not know.
fn other(s: &Stmt, warnings: &mut Vec<String>) -> Result<(), ConfigError> {
    let keyword = s.keyword.as_str();
    // `include*` reads other files; `@id` (conditional lines), `$NAME=` (parameters) and `~SEQ`
    // (sequences) rewrite the configuration.
    if UNSUPPORTED.contains(&keyword) || keyword.starts_with("include") || keyword.starts_with(['@', '$', '~']) {
        return Err(ConfigError::Unsupported { line: s.line, keyword: keyword.into() });
    }
    let block = if s.block.is_some() { " and its block" } else { "" };
    warn(warnings, s.line, format!("{keyword} is not used by cache-node vrrp; skipped it{block}"));
    Ok(())
}

fn warn(warnings: &mut Vec<String>, line: usize, message: String) {
    warnings.push(format!("keepalived.conf line {line}: {message}"));
}

/// The `garp_master_*` settings, as an instance names them (`global_defs` adds `vrrp_`).
/// Returns whether `keyword` was one of them.
fn set_garp(garp: &mut Garp, keyword: &str, s: &Stmt) -> Result<bool, ConfigError> {
    match keyword {
        "garp_master_delay" => garp.master_delay = s.whole_seconds(0)?,
        "garp_master_repeat" => garp.master_repeat = s.number(1, i64::from(u32::MAX))?,
        "garp_master_refresh" => garp.master_refresh = Some(s.whole_seconds(0)?).filter(|d| !d.is_zero()),
        "garp_master_refresh_repeat" => garp.master_refresh_repeat = s.number(1, i64::from(u32::MAX))?,
        _ => return Ok(false),
    }
    Ok(true)
}

fn parse_global(stmt: &Stmt, global: &mut Global, warnings: &mut Vec<String>) -> Result<(), ConfigError> {
    for s in stmt.block()? {
        if let Some(garp) = s.keyword.strip_prefix("vrrp_")
            && set_garp(&mut global.garp, garp, s)?
        {
            continue;
        }
        match s.keyword.as_str() {
            "router_id" => global.router_id = Some(s.value()?.to_owned()),
            "vrrp_version" => global.vrrp_version = s.number(2, 3)?,
            "enable_script_security" => global.enable_script_security = true,
            "script_user" => global.script_user = Some(s.user()?),
            "vrrp_garp_interval" => global.garp.interval = s.seconds()?,
            "vrrp_gna_interval" => global.garp.gna_interval = s.seconds()?,
            _ => other(s, warnings)?,
        }
    }
    Ok(())
}

fn parse_script(stmt: &Stmt, warnings: &mut Vec<String>) -> Result<Script, ConfigError> {
    let mut script = Script {
        name: stmt.name()?.to_owned(),
        command: String::new(),
        interval: Duration::from_secs(1),
        timeout: None,
        weight: 0,
        fall: 1,
        rise: 1,
        user: None,
    };
    for s in stmt.block()? {
        match s.keyword.as_str() {
            "script" => script.command = s.args.join(" "),
            "interval" => script.interval = s.whole_seconds(1)?,
            "timeout" => script.timeout = Some(s.whole_seconds(1)?),
            "weight" => {
                let (weight, rest) = s.args.split_first().ok_or_else(|| s.missing("a value"))?;
                script.weight = number(s.line, "weight", weight, -MAX_WEIGHT, MAX_WEIGHT)?;
                check_reverse(s.line, "weight", rest)?;
            }
            "fall" => script.fall = s.number(1, i64::from(i32::MAX))?,
            "rise" => script.rise = s.number(1, i64::from(i32::MAX))?,
            "user" => script.user = Some(s.user()?),
            _ => other(s, warnings)?,
        }
    }
    if script.command.is_empty() {
        return Err(ConfigError::Missing {
            line: stmt.line,
            keyword: format!("vrrp_script {}", script.name),
            what: "a script",
        });
    }
    Ok(script)
}

/// What may follow `weight N`: keepalived's `reverse` flips the adjustment, which we do not do.
fn check_reverse(line: usize, weight: &str, rest: &[String]) -> Result<(), ConfigError> {
    match rest {
        [] => Ok(()),
        [flag] if flag == "noreverse" || flag == "no_reverse" => Ok(()),
        [flag] if flag == "reverse" => Err(ConfigError::Unsupported { line, keyword: format!("{weight} reverse") }),
        _ => Err(invalid(line, weight, &rest.join(" "), "is not reverse or noreverse")),
    }
}

/// One line of `track_script` / `track_interface`: `NAME [weight N [noreverse]]`.
fn parse_track(s: &Stmt, block: &str) -> Result<Track, ConfigError> {
    let weight = match s.args.as_slice() {
        [] => None,
        [w, n, rest @ ..] if w == "weight" => {
            let weight = format!("{block} {} weight", s.keyword);
            check_reverse(s.line, &weight, rest)?;
            Some(number(s.line, &weight, n, -MAX_WEIGHT, MAX_WEIGHT)?)
        }
        _ => return Err(invalid(s.line, block, &s.args.join(" "), "is not weight N")),
    };
    Ok(Track { name: s.keyword.clone(), weight })
}

/// One `virtual_ipaddress` line: `ADDR[/PREFIX] [dev IF]`; keepalived's other `ip address`
/// options only shape how the address is added, so they are skipped with a warning.
fn parse_vip(s: &Stmt, warnings: &mut Vec<String>) -> Result<VirtualAddress, ConfigError> {
    const KEYWORD: &str = "virtual_ipaddress";
    let (addr, prefix) = match s.keyword.split_once('/') {
        Some((addr, prefix)) => (addr, Some(prefix)),
        None => (s.keyword.as_str(), None),
    };
    let addr: IpAddr = addr.parse().map_err(|_| invalid(s.line, KEYWORD, &s.keyword, "is not an IP address"))?;
    let max: u8 = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        Some(prefix) => number(s.line, KEYWORD, prefix, 0, max.into())?,
        None => max,
    };
    let mut dev = None;
    let mut options = s.args.iter();
    while let Some(option) = options.next() {
        let mut argument = || {
            options.next().ok_or_else(|| ConfigError::Missing {
                line: s.line,
                keyword: format!("{KEYWORD} {option}"),
                what: "a value",
            })
        };
        match option.as_str() {
            "dev" => dev = Some(argument()?.clone()),
            "use_vmac" => {
                return Err(ConfigError::Unsupported { line: s.line, keyword: format!("{KEYWORD} use_vmac") });
            }
            "brd" | "broadcast" | "scope" | "label" | "peer" | "preferred_lft" | "track_group" => {
                let value = argument()?;
                warn(warnings, s.line, format!("{KEYWORD} option {option} {value} is not used by cache-node vrrp"));
            }
            "home" | "-nodad" | "nodad" | "mngtmpaddr" | "noprefixroute" | "autojoin" | "no_track" => {
                warn(warnings, s.line, format!("{KEYWORD} option {option} is not used by cache-node vrrp"));
            }
            _ => return Err(invalid(s.line, KEYWORD, option, "is not an option of a virtual address")),
        }
    }
    Ok(VirtualAddress { addr, prefix, dev })
}

/// `authentication { auth_type PASS; auth_pass SECRET }`: the password.
fn parse_auth(stmt: &Stmt, warnings: &mut Vec<String>) -> Result<Vec<u8>, ConfigError> {
    let mut pass = false;
    let mut password = None;
    for s in stmt.block()? {
        match s.keyword.as_str() {
            "auth_type" => match s.value()? {
                "PASS" => pass = true,
                "AH" => return Err(ConfigError::Unsupported { line: s.line, keyword: "auth_type AH".into() }),
                other => return Err(s.invalid(other, "is not PASS")),
            },
            "auth_pass" => {
                let mut bytes = s.value()?.as_bytes().to_vec();
                if bytes.len() > PASSWORD_LEN {
                    bytes.truncate(PASSWORD_LEN);
                    warn(warnings, s.line, format!("auth_pass truncated to {PASSWORD_LEN} bytes, as in keepalived"));
                }
                password = Some(bytes);
            }
            _ => other(s, warnings)?,
        }
    }
    if !pass {
        return Err(stmt.missing("auth_type PASS"));
    }
    password.ok_or_else(|| stmt.missing("auth_pass"))
}

/// An instance, and the line of its `virtual_router_id` (for duplicates across instances).
fn parse_instance(
    stmt: &Stmt,
    global: &Global,
    scripts: &[Script],
    warnings: &mut Vec<String>,
) -> Result<(Instance, usize), ConfigError> {
    let name = stmt.name()?.to_owned();
    let mut state = None;
    let mut interface = None;
    let mut vrid = None;
    let mut priority = None;
    let mut advert = None;
    let mut version = None;
    let mut nopreempt = false;
    let mut preempt_delay = Duration::ZERO;
    let mut auth = None;
    let mut vips: Vec<VirtualAddress> = Vec::new();
    let mut track_script = Vec::new();
    let mut track_interface = Vec::new();
    let mut notify = Notify::default();
    let mut garp = global.garp.clone();
    let mut mcast_src_ip = None;
    for s in stmt.block()? {
        if set_garp(&mut garp, &s.keyword, s)? {
            continue;
        }
        match s.keyword.as_str() {
            "state" => {
                state = Some(match s.value()? {
                    "MASTER" => InitialState::Master,
                    "BACKUP" => InitialState::Backup,
                    other => return Err(s.invalid(other, "is not MASTER or BACKUP")),
                })
            }
            "interface" => interface = Some(s.value()?.to_owned()),
            "virtual_router_id" => vrid = Some((s.number::<u8>(1, 255)?, s.line)),
            "priority" => priority = Some(s.number::<u8>(1, 255)?),
            "advert_int" => {
                let interval = s.seconds()?;
                if interval.is_zero() {
                    return Err(s.invalid(s.value()?, "is not more than 0"));
                }
                advert = Some((interval, s));
            }
            "version" => version = Some((s.number::<u8>(2, 3)?, s)),
            "nopreempt" => nopreempt = true,
            "preempt" => nopreempt = false,
            "preempt_delay" => {
                preempt_delay = s.seconds()?;
                if preempt_delay > MAX_PREEMPT_DELAY {
                    return Err(s.invalid(s.value()?, "is out of range 0..=1000"));
                }
            }
            "authentication" => auth = Some((parse_auth(s, warnings)?, s)),
            "virtual_ipaddress" => {
                for line in s.block()? {
                    let vip = parse_vip(line, warnings)?;
                    if let Some(first) = vips.first()
                        && first.addr.is_ipv4() != vip.addr.is_ipv4()
                    {
                        return Err(invalid(
                            line.line,
                            &s.keyword,
                            &line.keyword,
                            "is not of the family of the instance's first address",
                        ));
                    }
                    vips.push(vip);
                }
            }
            "track_script" => {
                for line in s.block()? {
                    let track = parse_track(line, &s.keyword)?;
                    if !scripts.iter().any(|script| script.name == track.name) {
                        return Err(invalid(line.line, &s.keyword, &track.name, "names no vrrp_script"));
                    }
                    track_script.push(track);
                }
            }
            "track_interface" => {
                for line in s.block()? {
                    track_interface.push(parse_track(line, &s.keyword)?);
                }
            }
            "notify_master" => notify.master = Some(s.notify_script()?),
            "notify_backup" => notify.backup = Some(s.notify_script()?),
            "notify_fault" => notify.fault = Some(s.notify_script()?),
            "notify_stop" => notify.stop = Some(s.notify_script()?),
            "notify" => notify.any = Some(s.notify_script()?),
            "mcast_src_ip" => mcast_src_ip = Some((s.ip()?, s)),
            _ => other(s, warnings)?,
        }
    }

    let needs = |what| ConfigError::Missing { line: stmt.line, keyword: format!("vrrp_instance {name}"), what };
    let interface = interface.ok_or_else(|| needs("an interface"))?;
    let (virtual_router_id, vrid_line) = vrid.ok_or_else(|| needs("a virtual_router_id"))?;
    let ipv6 = vips.first().ok_or_else(|| needs("a virtual_ipaddress"))?.addr.is_ipv6();
    if let Some((ip, s)) = mcast_src_ip
        && ip.is_ipv6() != ipv6
    {
        return Err(s.invalid(&ip.to_string(), "is not of the virtual addresses' family"));
    }

    // keepalived: IPv6 instances always run VRRPv3.
    let vrrp_version = match version {
        Some((2, s)) if ipv6 => return Err(s.invalid("2", "cannot carry IPv6 addresses; IPv6 instances run version 3")),
        Some((version, _)) => version,
        None if ipv6 => 3,
        None => global.vrrp_version,
    };
    let advert_int = match advert {
        Some((interval, s)) => {
            let micros = interval.as_micros();
            let problem = match vrrp_version {
                2 if micros % 1_000_000 != 0 || micros > 255_000_000 => {
                    Some("is not whole seconds up to 255, as VRRPv2 needs")
                }
                3 if micros % 10_000 != 0 || micros > 40_950_000 => {
                    Some("is not in 0.01 s steps up to 40.95, as VRRPv3 needs")
                }
                _ => None,
            };
            if let Some(problem) = problem {
                return Err(s.invalid(s.value()?, problem));
            }
            interval
        }
        None => Duration::from_secs(1),
    };
    if let Some((_, s)) = auth
        && vrrp_version != 2
    {
        return Err(s.invalid("PASS", "is VRRPv2 only; this instance runs version 3"));
    }

    // keepalived's defaults each follow the other when only one is given.
    let priority =
        priority.unwrap_or(if state == Some(InitialState::Master) { OWNER_PRIORITY } else { DEFAULT_PRIORITY });
    let state = state.unwrap_or(if priority == OWNER_PRIORITY { InitialState::Master } else { InitialState::Backup });
    // keepalived drops these settings where they cannot work; doing the same keeps the pair
    // behaving as it did under keepalived.
    if nopreempt && (state == InitialState::Master || priority == OWNER_PRIORITY) {
        warn(
            warnings,
            stmt.line,
            format!("vrrp_instance {name}: nopreempt ignored with MASTER or priority 255, as in keepalived"),
        );
        nopreempt = false;
    }
    if !preempt_delay.is_zero() && (nopreempt || state == InitialState::Master) {
        warn(
            warnings,
            stmt.line,
            format!("vrrp_instance {name}: preempt_delay ignored with nopreempt or MASTER, as in keepalived"),
        );
        preempt_delay = Duration::ZERO;
    }

    let instance = Instance {
        name,
        state,
        interface,
        virtual_router_id,
        priority,
        advert_int,
        vrrp_version,
        nopreempt,
        preempt_delay,
        password: auth.map(|(password, _)| password),
        virtual_ipaddress: vips,
        track_script,
        track_interface,
        notify,
        garp,
        mcast_src_ip: mcast_src_ip.map(|(ip, _)| ip),
    };
    Ok((instance, vrid_line))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = include_str!("testdata/seed.conf");
    const OPERATOR_V2: &str = include_str!("testdata/operator-v2.conf");
    const OPERATOR_V3: &str = include_str!("testdata/operator-v3.conf");
    const LAYOUTS: &str = include_str!("testdata/syntax.conf");

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// A valid instance (lines 1-4) with `body` from line 5 on.
    fn instance(body: &str) -> String {
        format!(
            "vrrp_instance VI_1 {{\n  interface eth0\n  virtual_router_id 51\n  \
             virtual_ipaddress {{ 192.0.2.10 }}\n{body}\n}}\n"
        )
    }

    fn error(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn the_seed_setup() {
        let config = parse(SEED).unwrap();
        let expected = Config {
            global: Global { router_id: Some("LVS_DEVEL".into()), ..Global::default() },
            scripts: vec![Script {
                name: "chk_memcached".into(),
                command: "/etc/keepalived/check_memcached.sh".into(),
                interval: secs(2.0),
                timeout: None,
                weight: -20,
                fall: 3,
                rise: 1,
                user: None,
            }],
            instances: vec![Instance {
                name: "VI_1".into(),
                state: InitialState::Backup,
                interface: "eth0".into(),
                virtual_router_id: 51,
                priority: 150,
                advert_int: secs(1.0),
                vrrp_version: 2,
                nopreempt: true,
                preempt_delay: Duration::ZERO,
                password: Some(b"1111".to_vec()),
                virtual_ipaddress: vec![VirtualAddress { addr: ip("10.101.100.100"), prefix: 32, dev: None }],
                track_script: vec![Track { name: "chk_memcached".into(), weight: None }],
                track_interface: vec![],
                notify: Notify::default(),
                garp: Garp { master_delay: secs(10.0), ..Garp::default() },
                mcast_src_ip: None,
            }],
            warnings: vec![
                "keepalived.conf line 3: notification_email is not used by cache-node vrrp; skipped it and its block"
                    .into(),
            ],
        };
        assert_eq!(config, expected);
    }

    #[test]
    fn the_operators_rendering() {
        let config = parse(OPERATOR_V2).unwrap();
        assert_eq!(
            config.global,
            Global {
                router_id: Some("demo-b".into()),
                vrrp_version: 2,
                enable_script_security: true,
                script_user: None,
                garp: Garp::default()
            }
        );
        assert_eq!(
            config.scripts,
            [Script {
                name: "cache_is_master".into(),
                command: "/usr/local/bin/cache-node is-master --admin 127.0.0.1:9150".into(),
                interval: secs(1.0),
                timeout: Some(secs(1.0)),
                weight: 0,
                fall: 1,
                rise: 1,
                user: None,
            }]
        );
        let expected = Instance {
            name: "demo".into(),
            state: InitialState::Backup,
            interface: "eth0".into(),
            virtual_router_id: 51,
            priority: 100,
            advert_int: secs(1.0),
            vrrp_version: 2,
            nopreempt: true,
            preempt_delay: Duration::ZERO,
            password: Some(b"s3cret".to_vec()),
            virtual_ipaddress: vec![VirtualAddress { addr: ip("192.0.2.10"), prefix: 32, dev: Some("eth0".into()) }],
            track_script: vec![Track { name: "cache_is_master".into(), weight: None }],
            track_interface: vec![],
            notify: Notify::default(),
            garp: Garp::default(),
            mcast_src_ip: None,
        };
        assert_eq!(config.instances, std::slice::from_ref(&expected));
        assert_eq!(config.warnings, Vec::<String>::new());

        let config = parse(OPERATOR_V3).unwrap();
        assert_eq!(config.global.vrrp_version, 3);
        let vip = VirtualAddress { addr: ip("2001:db8::10"), prefix: 128, dev: Some("eth0".into()) };
        let v3 = Instance {
            advert_int: secs(0.25),
            vrrp_version: 3,
            password: None,
            virtual_ipaddress: vec![vip],
            ..expected
        };
        assert_eq!(config.instances, [v3]);
        assert_eq!(config.warnings, Vec::<String>::new());
    }

    #[test]
    fn version_3_takes_a_quarter_second_over_ipv4() {
        let text = format!("global_defs {{ vrrp_version 3 }}\n{}", instance("  advert_int 0.25"));
        let instance = &parse(&text).unwrap().instances[0];
        assert_eq!((instance.vrrp_version, instance.advert_int), (3, secs(0.25)));
        let text = instance_with_version("3", "advert_int 40.95");
        assert_eq!(parse(&text).unwrap().instances[0].advert_int, secs(40.95));
    }

    fn instance_with_version(version: &str, line: &str) -> String {
        instance(&format!("  version {version}\n  {line}"))
    }

    #[test]
    fn layouts_that_keepalived_accepts() {
        let config = parse(LAYOUTS).unwrap();
        let global = &config.global;
        assert_eq!(global.router_id.as_deref(), Some("edge 1"));
        assert_eq!(global.vrrp_version, 3);
        assert_eq!(global.garp.master_refresh, Some(secs(60.0)));
        assert_eq!(global.garp.interval, Duration::from_millis(1));
        assert_eq!(global.garp.gna_interval, Duration::from_micros(1));
        let script = &config.scripts[0];
        assert_eq!(script.command, "/bin/sh -c 'exit 0'");
        assert_eq!((script.interval, script.timeout), (secs(2.0), Some(secs(3.0))));
        assert_eq!((script.weight, script.fall, script.rise), (-20, 3, 2));
        assert_eq!(script.user, Some(("root".into(), Some("root".into()))));

        let [one, two] = config.instances.as_slice() else { panic!("two instances") };
        assert_eq!((one.state, one.priority, one.advert_int), (InitialState::Master, 200, secs(0.5)));
        assert_eq!(
            one.virtual_ipaddress,
            [
                VirtualAddress { addr: ip("192.0.2.10"), prefix: 24, dev: Some("eth0".into()) },
                VirtualAddress { addr: ip("192.0.2.11"), prefix: 32, dev: None },
            ]
        );
        assert_eq!(one.track_script, [Track { name: "chk".into(), weight: Some(-30) }]);
        assert_eq!(
            one.track_interface,
            [Track { name: "ifb0".into(), weight: None }, Track { name: "ifb1".into(), weight: Some(10) }]
        );
        assert_eq!(one.notify.master.as_deref(), Some("/bin/echo master"));
        assert_eq!(one.notify.any.as_deref(), Some("/bin/true"));
        let garp = Garp { master_delay: secs(1.0), master_repeat: 3, ..global.garp.clone() };
        assert_eq!(one.garp, garp);
        assert_eq!(one.mcast_src_ip, Some(ip("192.0.2.2")));

        assert_eq!((two.state, two.priority, two.vrrp_version), (InitialState::Backup, 50, 3));
        assert_eq!(two.preempt_delay, secs(2.5));
        assert_eq!(two.virtual_ipaddress[0].prefix, 128);
        assert_eq!(two.garp, global.garp);

        assert_eq!(
            config.warnings,
            [
                "keepalived.conf line 5: notification_email is not used by cache-node vrrp; skipped it and its block",
                "keepalived.conf line 26: dont_track_primary is not used by cache-node vrrp; skipped it",
                "keepalived.conf line 28: virtual_ipaddress option label eth0:1 is not used by cache-node vrrp",
            ]
        );
    }

    #[test]
    fn layouts_of_braces_comments_and_quotes() {
        let one_line = "vrrp_instance VI_1 { interface eth0\nvirtual_router_id 51\nvirtual_ipaddress { 192.0.2.10 } }";
        let brace_below =
            "vrrp_instance VI_1\n{\ninterface eth0\nvirtual_router_id 51\nvirtual_ipaddress\n{\n192.0.2.10\n}\n}";
        let touching = "vrrp_instance VI_1{interface eth0\nvirtual_router_id 51\nvirtual_ipaddress{192.0.2.10}}";
        let commented = "# c\nvrrp_instance VI_1 { ! c\ninterface eth0#c\nvirtual_router_id 51!c\n\
                         virtual_ipaddress { 192.0.2.10 # } c\n } }";
        let quoted = "vrrp_instance \"VI_1\" {\ninterface \"eth0\"\nvirtual_router_id \"51\"\n\
                      virtual_ipaddress { \"192.0.2.10\" }\n}";
        for text in [one_line, brace_below, touching, commented, quoted] {
            let config = parse(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
            let instance = &config.instances[0];
            assert_eq!((instance.name.as_str(), instance.interface.as_str()), ("VI_1", "eth0"), "{text}");
            assert_eq!(instance.virtual_router_id, 51, "{text}");
            assert_eq!(instance.virtual_ipaddress[0].addr, ip("192.0.2.10"), "{text}");
        }
        // Quotes join words, keep `#`, `!` and braces, and may sit inside a word.
        let config = parse(&instance("  notify_master \"/bin/a {b} #c !d\"\n  notify x\"y z\"w")).unwrap();
        assert_eq!(config.instances[0].notify.master.as_deref(), Some("/bin/a {b} #c !d"));
        assert_eq!(config.instances[0].notify.any.as_deref(), Some("xy zw"));
    }

    #[test]
    fn keepalived_defaults() {
        let config = parse(&instance("")).unwrap();
        let i = &config.instances[0];
        assert_eq!((i.state, i.priority, i.advert_int, i.vrrp_version), (InitialState::Backup, 100, secs(1.0), 2));
        assert_eq!((i.nopreempt, i.preempt_delay, &i.password), (false, Duration::ZERO, &None));
        assert_eq!(
            i.garp,
            Garp {
                master_delay: secs(5.0),
                master_repeat: 5,
                master_refresh: None,
                master_refresh_repeat: 1,
                interval: Duration::ZERO,
                gna_interval: Duration::ZERO
            }
        );
        // The state and the priority each default from the other.
        let master = parse(&instance("  state MASTER")).unwrap();
        assert_eq!(master.instances[0].priority, 255);
        let owner = parse(&instance("  priority 255")).unwrap();
        assert_eq!(owner.instances[0].state, InitialState::Master);
        // IPv6 instances run VRRPv3 whatever the global version.
        let text = "global_defs { vrrp_version 2 }\nvrrp_instance V { interface eth0\nvirtual_router_id 1\n\
                    virtual_ipaddress { 2001:db8::1 } }";
        assert_eq!(parse(text).unwrap().instances[0].vrrp_version, 3);
        // Global garp settings are the instance's defaults, wherever global_defs is.
        let text = format!("{}global_defs {{ vrrp_garp_master_delay 0\nvrrp_garp_master_refresh 0 }}", instance(""));
        let garp = &parse(&text).unwrap().instances[0].garp;
        assert_eq!((garp.master_delay, garp.master_refresh), (Duration::ZERO, None));
    }

    #[test]
    fn settings_keepalived_drops_are_dropped_with_a_warning() {
        let config = parse(&instance("  state MASTER\n  nopreempt\n  preempt_delay 3")).unwrap();
        assert_eq!((config.instances[0].nopreempt, config.instances[0].preempt_delay), (false, Duration::ZERO));
        assert_eq!(
            config.warnings,
            [
                "keepalived.conf line 1: vrrp_instance VI_1: nopreempt ignored with MASTER or priority 255, as in keepalived",
                "keepalived.conf line 1: vrrp_instance VI_1: preempt_delay ignored with nopreempt or MASTER, as in keepalived",
            ]
        );
        let config = parse(&instance("  authentication {\n auth_type PASS\n auth_pass 123456789\n }")).unwrap();
        assert_eq!(config.instances[0].password.as_deref(), Some(&b"12345678"[..]));
        assert_eq!(config.warnings, ["keepalived.conf line 7: auth_pass truncated to 8 bytes, as in keepalived"]);
    }

    #[test]
    fn unknown_keywords_anywhere_are_skipped_with_a_warning() {
        let text = format!(
            "lvs_id x\nvirtual_server 10.0.0.1 80 {{\n  real_server 10.0.0.2 80 {{ weight 1 }}\n}}\n\
             vrrp_script s {{ script /bin/true\n init_fail }}\n{}",
            instance("  strict_mode\n  authentication { auth_type PASS\n auth_pass x\n auth_extra y }")
        );
        let config = parse(&text).unwrap();
        assert_eq!(
            config.warnings,
            [
                "keepalived.conf line 1: lvs_id is not used by cache-node vrrp; skipped it",
                "keepalived.conf line 2: virtual_server is not used by cache-node vrrp; skipped it and its block",
                "keepalived.conf line 6: init_fail is not used by cache-node vrrp; skipped it",
                "keepalived.conf line 11: strict_mode is not used by cache-node vrrp; skipped it",
                "keepalived.conf line 14: auth_extra is not used by cache-node vrrp; skipped it",
            ]
        );
    }

    #[test]
    fn syntax_errors() {
        for (text, message) in [
            ("global_defs {\n router_id \"a b\n}", "line 2: \"a b has no closing quote"),
            ("global_defs {\n}\n}", "line 3: } closes no block"),
            ("global_defs {\n router_id x\n", "line 1: global_defs opens a block that is never closed"),
            ("global_defs\n{ router_id x }\n{ }", "line 3: { follows no keyword"),
            (
                "a {\nb {\nc {\nd {\ne {\nf {\ng {\nh {\ni {\nj {\nk {\nl {\nm {\nn {\no {\np {\nq {\n",
                "line 17: q nests blocks too deeply",
            ),
            ("global_defs { router_id x { y } }", "line 1: router_id takes no block"),
        ] {
            assert_eq!(error(text), format!("keepalived.conf {message}"), "{text}");
        }
    }

    #[test]
    fn missing_values_and_keywords() {
        let without =
            |keyword: &str| instance("").lines().filter(|l| !l.contains(keyword)).collect::<Vec<_>>().join("\n");
        for (text, message) in [
            (without("interface"), "line 1: vrrp_instance VI_1 needs an interface"),
            (without("virtual_router_id"), "line 1: vrrp_instance VI_1 needs a virtual_router_id"),
            (without("virtual_ipaddress"), "line 1: vrrp_instance VI_1 needs a virtual_ipaddress"),
            (instance("  priority"), "line 5: priority needs a value"),
            (instance("  track_script"), "line 5: track_script needs a { } block"),
            (instance("  authentication {\n auth_pass x }"), "line 5: authentication needs auth_type PASS"),
            (instance("  authentication {\n auth_type PASS }"), "line 5: authentication needs auth_pass"),
            (instance("  virtual_ipaddress { 192.0.2.1 dev }"), "line 5: virtual_ipaddress dev needs a value"),
            ("vrrp_instance {\n}".into(), "line 1: vrrp_instance needs a name"),
            ("vrrp_script s {\n interval 1\n}".into(), "line 1: vrrp_script s needs a script"),
            ("global_defs {\n router_id x\n}\n".into(), "line 3: the file needs a vrrp_instance"),
        ] {
            assert_eq!(error(&text), format!("keepalived.conf {message}"), "{text}");
        }
    }

    #[test]
    fn invalid_values() {
        let with_script = |line: &str| format!("vrrp_script s {{\n script /bin/true\n {line}\n}}\n{}", instance(""));
        for (text, message) in [
            (instance("  virtual_router_id 300"), "line 5: virtual_router_id 300 is out of range 1..=255"),
            (instance("  priority 0"), "line 5: priority 0 is out of range 1..=255"),
            (instance("  priority high"), "line 5: priority high is not a whole number"),
            (instance("  priority 100 200"), "line 5: priority 200 is more than the one value it takes"),
            (instance("  state FAULT"), "line 5: state FAULT is not MASTER or BACKUP"),
            (instance("  version 4"), "line 5: version 4 is out of range 2..=3"),
            ("global_defs { vrrp_version 1 }".into(), "line 1: vrrp_version 1 is out of range 2..=3"),
            (instance("  advert_int 0.5"), "line 5: advert_int 0.5 is not whole seconds up to 255, as VRRPv2 needs"),
            (instance("  advert_int 0"), "line 5: advert_int 0 is not more than 0"),
            (
                instance("  advert_int -1"),
                "line 5: advert_int -1 is not a number of seconds such as 2 or 0.25 (at most 6 decimals)",
            ),
            (
                instance("  advert_int NaN"),
                "line 5: advert_int NaN is not a number of seconds such as 2 or 0.25 (at most 6 decimals)",
            ),
            (
                instance_with_version("3", "advert_int 0.015"),
                "line 6: advert_int 0.015 is not in 0.01 s steps up to 40.95, as VRRPv3 needs",
            ),
            (
                instance_with_version("3", "advert_int 41"),
                "line 6: advert_int 41 is not in 0.01 s steps up to 40.95, as VRRPv3 needs",
            ),
            (instance("  preempt_delay 1001"), "line 5: preempt_delay 1001 is out of range 0..=1000"),
            (
                instance_with_version("3", "authentication { auth_type PASS\n auth_pass x }"),
                "line 6: authentication PASS is VRRPv2 only; this instance runs version 3",
            ),
            (instance("  authentication { auth_type MD5 }"), "line 5: auth_type MD5 is not PASS"),
            (
                "vrrp_instance V { interface eth0\nvirtual_router_id 1\nversion 2\nvirtual_ipaddress { 2001:db8::1 } }"
                    .into(),
                "line 3: version 2 cannot carry IPv6 addresses; IPv6 instances run version 3",
            ),
            (
                instance("  virtual_ipaddress {\n 192.0.2.11\n 2001:db8::1\n }"),
                "line 7: virtual_ipaddress 2001:db8::1 is not of the family of the instance's first address",
            ),
            (
                instance("  virtual_ipaddress { 192.0.2.300 }"),
                "line 5: virtual_ipaddress 192.0.2.300 is not an IP address",
            ),
            (instance("  virtual_ipaddress { 192.0.2.1/33 }"), "line 5: virtual_ipaddress 33 is out of range 0..=32"),
            (
                instance("  virtual_ipaddress { 192.0.2.1 192.0.2.2 }"),
                "line 5: virtual_ipaddress 192.0.2.2 is not an option of a virtual address",
            ),
            (
                instance("  mcast_src_ip 2001:db8::1"),
                "line 5: mcast_src_ip 2001:db8::1 is not of the virtual addresses' family",
            ),
            (instance("  track_script { chk }"), "line 5: track_script chk names no vrrp_script"),
            (
                instance("  track_interface { eth1 weight 254 }"),
                "line 5: track_interface eth1 weight 254 is out of range -253..=253",
            ),
            (instance("  track_interface { eth1 heavy }"), "line 5: track_interface heavy is not weight N"),
            (with_script("interval 1.5"), "line 3: interval 1.5 is not a whole number"),
            (with_script("interval 0"), "line 3: interval 0 is out of range 1..=4294967295"),
            (with_script("timeout -1"), "line 3: timeout -1 is out of range 1..=4294967295"),
            (with_script("weight -254"), "line 3: weight -254 is out of range -253..=253"),
            (with_script("weight 2 sideways"), "line 3: weight sideways is not reverse or noreverse"),
            (with_script("fall 0"), "line 3: fall 0 is out of range 1..=2147483647"),
        ] {
            assert_eq!(error(&text), format!("keepalived.conf {message}"), "{text}");
        }
    }

    #[test]
    fn features_that_change_behaviour_are_refused() {
        for keyword in UNSUPPORTED {
            let text = instance(&format!("  {keyword} {{ 192.0.2.20 }}"));
            let message = format!("keepalived.conf line 5: {keyword}: cache-node vrrp does not support it");
            assert_eq!(error(&text), message);
            let text = format!("global_defs {{\n {keyword} x\n}}\n{}", instance(""));
            assert_eq!(error(&text), message.replace("line 5", "line 2"));
        }
        let with_script = |line: &str| format!("vrrp_script s {{\n script /bin/true\n {line}\n}}\n{}", instance(""));
        for (text, keyword) in [
            ("include /etc/keepalived/conf.d/*.conf".into(), "include"),
            ("includea /etc/keepalived/other.conf".into(), "includea"),
            ("@main router_id a".into(), "@main"),
            ("$PRIO=100".into(), "$PRIO=100"),
            (instance("  authentication {\n auth_type AH\n }"), "auth_type AH"),
            (instance("  notify_master /bin/notify root"), "notify_master with a user"),
            (instance("  virtual_ipaddress { 192.0.2.1 use_vmac }"), "virtual_ipaddress use_vmac"),
            (with_script("weight 10 reverse"), "weight reverse"),
            (
                with_script("weight 10\n}\nvrrp_instance X {\ntrack_script { s weight 5 reverse }"),
                "track_script s weight reverse",
            ),
        ] {
            let message = error(&text);
            assert!(message.ends_with(&format!(" {keyword}: cache-node vrrp does not support it")), "{message}");
            assert!(message.starts_with("keepalived.conf line "), "{message}");
        }
        assert_eq!(
            error(&instance("  authentication {\n auth_type AH\n }")),
            "keepalived.conf line 6: auth_type AH: cache-node vrrp does not support it"
        );
    }

    #[test]
    fn duplicates() {
        let twice = |a: &str, b: &str| format!("{}{}", instance(a), instance(b));
        let other_name = |body: &str| instance(body).replace("VI_1", "VI_2");
        for (text, message) in [
            (twice("", ""), "line 7: vrrp_instance VI_1 is already defined at line 1"),
            (
                format!("{}{}", instance(""), other_name("")),
                "line 9: virtual_router_id 51 on eth0 (IPv4) is already defined at line 3",
            ),
            (
                "vrrp_script s { script a }\nvrrp_script s { script b }".into(),
                "line 2: vrrp_script s is already defined at line 1",
            ),
        ] {
            assert_eq!(error(&text), format!("keepalived.conf {message}"), "{text}");
        }
        // The same id on another interface or for the other family is another router.
        let other_interface = other_name("").replace("interface eth0", "interface eth1");
        assert!(parse(&format!("{}{other_interface}", instance(""))).is_ok());
        let ipv6 = other_name("").replace("192.0.2.10", "2001:db8::10");
        assert!(parse(&format!("{}{ipv6}", instance(""))).is_ok());
    }

    #[test]
    fn load_reads_the_file_and_names_it_when_it_cannot() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/vrrp/testdata/seed.conf");
        assert_eq!(load(&path).unwrap(), parse(SEED).unwrap());
        let missing = Path::new("/nonexistent/keepalived.conf");
        let message = load(missing).unwrap_err().to_string();
        assert!(message.starts_with("cannot read /nonexistent/keepalived.conf: "), "{message}");
    }
}
