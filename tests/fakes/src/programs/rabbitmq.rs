//! A quick `rabbitmqctl` (rabbitmqctl(8)): the commands the `rabbitmq`
//! step and the tests use, done through the HTTP management API of the
//! real RabbitMQ on 127.0.0.1 (rabbitmq-server `deps/rabbitmq_management`,
//! as `guest`, who may log in from loopback), so that passwords and
//! definitions land in the real server without starting an Erlang VM per
//! call. And `rabbitmq-plugins enable` (rabbitmq-plugins(8)), which writes
//! the world's `enabled_plugins`.
//!
//! The tests use [`rabbitmqctl`] in-process to set up RabbitMQ.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::{Fake, Reply};

/// What a command of `rabbitmqctl` answered: exit code, stdout, stderr.
pub type Answer = (i32, String, String);

/// One HTTP/1.0 request to the management API (the server then sends a
/// plain body and closes: no chunks to decode); the status and the body.
fn api(port: u16, method: &str, path: &str, body: Option<&Value>) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .map_err(|error| format!("cannot reach the management API on 127.0.0.1:{port}: {error}"))?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let body = body.map(Value::to_string).unwrap_or_default();
    let credentials = base64::engine::general_purpose::STANDARD.encode("guest:guest");
    let request = format!(
        "{method} /api/{path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Basic {credentials}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|error| error.to_string())?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|error| error.to_string())?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {head}"))?;
    Ok((status, body.to_string()))
}

fn quoted(name: &str) -> String {
    name.bytes()
        .map(|byte| match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

struct Api(u16);

impl Api {
    /// The JSON of a GET, `None` for 404.
    fn get(&self, path: &str) -> Result<Option<Value>, Answer> {
        self.call("GET", path, None)
    }

    fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Option<Value>, Answer> {
        let (status, text) = api(self.0, method, path, body)
            .map_err(|error| (69, String::new(), format!("Error: {error}\n")))?;
        match status {
            404 => Ok(None),
            200..=299 if text.trim().is_empty() => Ok(Some(Value::Null)),
            200..=299 => serde_json::from_str(&text).map(Some).map_err(|error| {
                (
                    70,
                    String::new(),
                    format!("Error: {method} {path}: {error}\n"),
                )
            }),
            _ => Err((
                70,
                String::new(),
                format!("Error: {method} {path}: {status} {text}\n"),
            )),
        }
    }

    fn user(&self, name: &str) -> Result<Value, Answer> {
        self.get(&format!("users/{}", quoted(name)))?
            .ok_or_else(|| {
                (
                    70,
                    String::new(),
                    format!("Error:\nUser \"{name}\" does not exist\n"),
                )
            })
    }
}

fn tags(user: &Value) -> Vec<String> {
    match &user["tags"] {
        Value::Array(tags) => tags
            .iter()
            .filter_map(|t| t.as_str().map(String::from))
            .collect(),
        Value::String(text) => text
            .split(',')
            .filter(|t| !t.is_empty())
            .map(String::from)
            .collect(),
        _ => Vec::new(),
    }
}

/// Runs `rabbitmqctl ARGS` against the management API on `port`, with
/// `stdin` (a password, definitions).
pub fn rabbitmqctl(port: u16, args: &[String], stdin: &str) -> Answer {
    match command(&Api(port), args, stdin) {
        Ok(stdout) => (0, stdout, String::new()),
        Err(answer) => answer,
    }
}

fn command(api: &Api, args: &[String], stdin: &str) -> Result<String, Answer> {
    let mut words = Vec::new();
    let mut vhost = "/".to_string();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "-q" | "--quiet" | "-s" | "--silent" | "--no-table-headers" => {}
            "--formatter" | "--format" | "-n" | "--node" | "-t" | "--timeout" => {
                iter.next();
            }
            "-p" | "--vhost" => vhost = iter.next().cloned().unwrap_or_default(),
            flag if flag.starts_with("--formatter=") || flag.starts_with("--format=") => {}
            flag if flag.starts_with('-') && flag != "-" => {
                return Err((64, String::new(), format!("Error: invalid option {flag}\n")));
            }
            word => words.push(word.to_string()),
        }
    }
    let password = stdin.trim_end_matches('\n');
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let user_path = |name: &str| format!("users/{}", quoted(name));
    match words.as_slice() {
        ["await_startup"] => api.get("overview").map(|_| String::new()),
        ["export_definitions", "-"] => {
            let definitions = api.get("definitions")?.unwrap_or(Value::Null);
            Ok(format!("{definitions}\n"))
        }
        ["import_definitions"] | ["import_definitions", "-"] => {
            let definitions: Value = serde_json::from_str(stdin).map_err(|error| {
                (
                    65,
                    String::new(),
                    format!("Error: the definitions are not JSON: {error}\n"),
                )
            })?;
            api.call("POST", "definitions", Some(&definitions))?;
            Ok(String::new())
        }
        ["list_users"] => {
            let users = api.get("users")?.unwrap_or(json!([]));
            let listed: Vec<Value> = (users.as_array().into_iter().flatten())
                .map(|user| json!({ "user": user["name"], "tags": tags(user) }))
                .collect();
            Ok(format!("{}\n", Value::Array(listed)))
        }
        ["list_vhosts"] => {
            let vhosts = api.get("vhosts")?.unwrap_or(json!([]));
            let listed: Vec<Value> = (vhosts.as_array().into_iter().flatten())
                .map(|vhost| json!({ "name": vhost["name"] }))
                .collect();
            Ok(format!("{}\n", Value::Array(listed)))
        }
        ["list_user_permissions", name] => {
            let found = api
                .get(&format!("users/{}/permissions", quoted(name)))?
                .unwrap_or(json!([]));
            let listed: Vec<Value> = (found.as_array().into_iter().flatten())
                .map(|p| json!({ "vhost": p["vhost"], "configure": p["configure"], "write": p["write"], "read": p["read"] }))
                .collect();
            Ok(format!("{}\n", Value::Array(listed)))
        }
        ["add_user", name] => {
            if api.get(&user_path(name))?.is_some() {
                return Err((
                    70,
                    String::new(),
                    format!("Error: user '{name}' already exists\n"),
                ));
            }
            api.call(
                "PUT",
                &user_path(name),
                Some(&json!({ "password": password, "tags": "" })),
            )?;
            Ok(format!("Adding user \"{name}\" ...\n"))
        }
        ["change_password", name] => {
            let user = api.user(name)?;
            let body = json!({ "password": password, "tags": tags(&user).join(",") });
            api.call("PUT", &user_path(name), Some(&body))?;
            Ok(String::new())
        }
        ["authenticate_user", name] => {
            let user = api.user(name)?;
            // rabbit_password_hashing_sha256: base64(salt + sha256(salt + password)).
            let stored = base64::engine::general_purpose::STANDARD
                .decode(user["password_hash"].as_str().unwrap_or(""))
                .unwrap_or_default();
            if stored.len() < 4 {
                return Err((
                    65,
                    String::new(),
                    format!("Error: failed to authenticate user \"{name}\"\n"),
                ));
            }
            let (salt, digest) = stored.split_at(4);
            let computed = Sha256::new()
                .chain_update(salt)
                .chain_update(password)
                .finalize();
            match computed.as_slice() == digest {
                true => Ok("Success\n".into()),
                false => Err((
                    65,
                    String::new(),
                    format!("Error: failed to authenticate user \"{name}\"\n"),
                )),
            }
        }
        ["set_user_tags", name, new_tags @ ..] => {
            let user = api.user(name)?;
            let body = json!({ "password_hash": user["password_hash"],
                "hashing_algorithm": user["hashing_algorithm"], "tags": new_tags.join(",") });
            api.call("PUT", &user_path(name), Some(&body))?;
            Ok(String::new())
        }
        ["delete_user", name] => {
            api.user(name)?;
            api.call("DELETE", &user_path(name), None)?;
            Ok(format!("Deleting user \"{name}\" ...\n"))
        }
        ["set_permissions", name, configure, write, read] => {
            let path = format!("permissions/{}/{}", quoted(&vhost), quoted(name));
            let body = json!({ "configure": configure, "write": write, "read": read });
            api.call("PUT", &path, Some(&body))?;
            Ok(String::new())
        }
        ["add_vhost", name] => {
            api.call("PUT", &format!("vhosts/{}", quoted(name)), None)?;
            Ok(format!("Adding vhost \"{name}\" ...\n"))
        }
        ["delete_vhost", name] => {
            if api.get(&format!("vhosts/{}", quoted(name)))?.is_none() {
                return Err((
                    70,
                    String::new(),
                    format!("Error:\nVirtual host '{name}' does not exist\n"),
                ));
            }
            api.call("DELETE", &format!("vhosts/{}", quoted(name)), None)?;
            Ok(format!("Deleting vhost \"{name}\" ...\n"))
        }
        _ => Err((
            64,
            String::new(),
            format!(
                "Error: this rabbitmqctl does not know `{}`\n",
                words.join(" ")
            ),
        )),
    }
}

/// The environment of the process that lands the rest of a lagging import.
const DEFERRED: &str = "STACKINSTALL_FAKE_DEFERRED_IMPORT";

/// The fake `rabbitmqctl`: through the management API the world names.
pub fn run(fake: &Fake) -> Reply {
    let Some(port) = fake.config.rabbitmq_management_port else {
        return Reply::fail(
            69,
            "Error: this world gives rabbitmqctl no RabbitMQ (no management port, no real program)\n",
        );
    };
    let lag = fake.config.rabbitmq_import_lag_seconds;
    if lag > 0.0 && fake.args.iter().any(|arg| arg == "import_definitions") {
        return lagging_import(fake, port, lag);
    }
    let (code, stdout, stderr) = rabbitmqctl(port, &fake.args, &fake.stdin_text());
    Reply {
        code,
        stdout,
        stderr,
    }
}

/// `rabbitmq-plugins enable PLUGIN...`: the world's
/// `/etc/rabbitmq/enabled_plugins` (an Erlang list) gets them.
pub fn plugins(fake: &Fake) -> Reply {
    let words: Vec<&str> = (fake.args.iter())
        .map(String::as_str)
        .filter(|arg| {
            !matches!(
                *arg,
                "-q" | "--quiet" | "-s" | "--silent" | "--offline" | "--online"
            )
        })
        .collect();
    let ["enable", plugins @ ..] = words.as_slice() else {
        return Reply::fail(
            64,
            format!(
                "Error: this rabbitmq-plugins knows `enable` only, not `{}`\n",
                words.join(" ")
            ),
        );
    };
    let file = fake.host_path("/etc/rabbitmq/enabled_plugins");
    let text = std::fs::read_to_string(&file).unwrap_or_default();
    let mut enabled: Vec<String> = text
        .trim()
        .trim_start_matches('[')
        .trim_end_matches('.')
        .trim_end_matches(']')
        .split(',')
        .map(|plugin| plugin.trim().to_string())
        .filter(|plugin| !plugin.is_empty())
        .collect();
    for plugin in plugins {
        if !enabled.iter().any(|p| p == plugin) {
            enabled.push(plugin.to_string());
        }
    }
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, format!("[{}].\n", enabled.join(","))).unwrap();
    Reply::out(format!(
        "The following plugins have been configured:\n{}",
        plugins
            .iter()
            .map(|p| format!("  {p}\n"))
            .collect::<String>()
    ))
}

/// `import_definitions` whose users' tags and permissions land after it
/// returned: the import is applied by the node after the command's answer
/// (issue 23 item 6; why the step waits for the user's login after it).
/// The users (without their tags) and vhosts go in now; a process of its
/// own, in a process group of its own so that the caller's end does not
/// take it along, puts the whole definitions in `lag` seconds later.
fn lagging_import(fake: &Fake, port: u16, lag: f64) -> Reply {
    let text = fake.stdin_text();
    let Ok(definitions) = serde_json::from_str::<Value>(&text) else {
        return Reply::fail(65, "Error: the definitions are not JSON\n");
    };
    let mut first = definitions.clone();
    first["permissions"] = json!([]);
    for user in first["users"].as_array_mut().into_iter().flatten() {
        user["tags"] = json!("");
    }
    if let Err((code, _, stderr)) = Api(port).call("POST", "definitions", Some(&first)) {
        return Reply::fail(code, stderr);
    }
    let file = fake.state.join("deferred-import.json");
    std::fs::write(&file, definitions.to_string()).unwrap();
    let program = std::env::args().next().unwrap_or_default();
    let spawned = std::process::Command::new(program)
        .env(DEFERRED, format!("{port} {lag} {}", file.display()))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn();
    match spawned {
        Ok(_) => Reply::ok(),
        Err(error) => Reply::fail(70, format!("Error: {error}\n")),
    }
}

/// In the process `lagging_import` started: waits, then imports the whole
/// definitions; `None` in any other process.
pub fn deferred_import() -> Option<i32> {
    let job = std::env::var(DEFERRED).ok()?;
    let mut words = job.splitn(3, ' ');
    let (port, lag, file) = (words.next()?, words.next()?, words.next()?);
    std::thread::sleep(Duration::from_secs_f64(lag.parse().ok()?));
    let definitions: Value = serde_json::from_str(&std::fs::read_to_string(file).ok()?).ok()?;
    let answer = Api(port.parse().ok()?).call("POST", "definitions", Some(&definitions));
    Some(if answer.is_ok() { 0 } else { 1 })
}
