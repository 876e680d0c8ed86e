//! [`StepId`]: which step, by name, in install order. The steps themselves
//! and what the engine knows of them are in `steps/` (`StepId::step`,
//! `StepId::info`).

/// Which step: the checkpoint key (`preflight`, `k3s`, ...), the file name
/// under `src/steps/`, and the position in the install order.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum StepId {
    Preflight,
    Credentials,
    K3s,
    Helm,
    Istio,
    Packages,
    Mysql,
    Mongodb,
    Rabbitmq,
    Nfs,
    Storage,
    Namespace,
    Registry,
    Tls,
    Release,
    Gateway,
    Wait,
    Backups,
    Summary,
}

impl StepId {
    /// Every step, in install order.
    pub const ALL: [StepId; 19] = [
        Self::Preflight,
        Self::Credentials,
        Self::K3s,
        Self::Helm,
        Self::Istio,
        Self::Packages,
        Self::Mysql,
        Self::Mongodb,
        Self::Rabbitmq,
        Self::Nfs,
        Self::Storage,
        Self::Namespace,
        Self::Registry,
        Self::Tls,
        Self::Release,
        Self::Gateway,
        Self::Wait,
        Self::Backups,
        Self::Summary,
    ];
    /// Its place in the install order, from 0.
    pub fn position(self) -> usize {
        self as usize
    }

    /// The checkpoint key: `preflight`, `k3s`, ...
    pub fn name(self) -> &'static str {
        match self {
            Self::Preflight => "preflight",
            Self::Credentials => "credentials",
            Self::K3s => "k3s",
            Self::Helm => "helm",
            Self::Istio => "istio",
            Self::Packages => "packages",
            Self::Mysql => "mysql",
            Self::Mongodb => "mongodb",
            Self::Rabbitmq => "rabbitmq",
            Self::Nfs => "nfs",
            Self::Storage => "storage",
            Self::Namespace => "namespace",
            Self::Registry => "registry",
            Self::Tls => "tls",
            Self::Release => "release",
            Self::Gateway => "gateway",
            Self::Wait => "wait",
            Self::Backups => "backups",
            Self::Summary => "summary",
        }
    }

    /// The step named `name`, if there is one.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|id| id.name() == name)
    }
}

impl std::fmt::Display for StepId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
