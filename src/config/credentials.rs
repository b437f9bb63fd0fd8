//! The `credentials` section and its cross-field rules.

use std::path::PathBuf;
use std::time::Duration;

use marked_yaml::types::MarkedMappingNode;
use marked_yaml::{Node, Span};
use secrecy::SecretString;

use super::decoder::{Decoder, Field, entry, is_null, join, position};
use super::types::{CredentialsConfig, OidcConfig};
use super::values::{
    duration_in, parse_ecs_role, parse_policy, parse_provider_arn, parse_role_arn,
    parse_session_name,
};
use super::values::{parse_endpoint, parse_metadata_endpoint};
use crate::aliyun::endpoint::Endpoint;

const CREDENTIALS_KEYS: &[&str] = &[
    "access_key_id",
    "access_key_secret",
    "access_key_secret_file",
    "security_token",
    "profile",
    "ram_role_arn",
    "role_session_name",
    "external_id",
    "policy",
    "duration",
    "ecs_ram_role",
    "oidc",
    "sts_endpoint",
    "metadata_endpoint",
];
const OIDC_KEYS: &[&str] = &["role_arn", "provider_arn", "token_file"];

// STS's own bounds for DurationSeconds.
const MIN_ROLE_DURATION: Duration = Duration::from_secs(15 * 60);
const MAX_ROLE_DURATION: Duration = Duration::from_secs(12 * 3600);

/// Every `credentials` key as read, before the cross-field rules.
struct CredentialFields {
    id: Field<String>,
    secret: Field<SecretString>,
    file: Field<PathBuf>,
    token: Field<SecretString>,
    profile: Field<String>,
    role_arn: Field<String>,
    session: Field<String>,
    external_id: Field<String>,
    policy: Field<String>,
    duration: Field<Duration>,
    ecs: Field<EcsRole>,
    oidc: Field<OidcConfig>,
    sts: Field<Endpoint>,
    metadata: Field<Endpoint>,
}

/// A key that says where credentials come from; at most one may be given.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    StaticKeys,
    Profile,
    EcsRole,
    Oidc,
    AssumeRole,
}

impl Source {
    /// The key that selects this source.
    fn key(self) -> &'static str {
        match self {
            Source::StaticKeys => "access_key_id",
            Source::Profile => "profile",
            Source::EcsRole => "ecs_ram_role",
            Source::Oidc => "oidc",
            Source::AssumeRole => "ram_role_arn",
        }
    }

    /// Whether both may be given: a role is assumed on top of static keys, not instead of them.
    fn combines_with(self, other: Source) -> bool {
        matches!(
            (self, other),
            (Source::StaticKeys, Source::AssumeRole) | (Source::AssumeRole, Source::StaticKeys)
        )
    }
}

/// What `ecs_ram_role` asks for.
enum EcsRole {
    /// Ask the metadata service which role the instance has.
    Discover,
    /// Use this role.
    Named(String),
}

impl Decoder<'_> {
    pub(super) fn credentials(
        &mut self,
        key: &Span,
        node: &Node,
        p: &str,
    ) -> Option<CredentialsConfig> {
        let empty = MarkedMappingNode::new_empty(Span::new_blank());
        let m = match self.mapping(node, p) {
            Field::Set(m, _) => m,
            Field::Absent => &empty,
            Field::Invalid => return None,
        };
        self.check_keys(m, p, CREDENTIALS_KEYS);
        let string = |s: &str| Ok(s.to_owned());
        let secret = |s: &str| Ok(SecretString::from(s));
        let f = CredentialFields {
            id: self.optional(m, "access_key_id", p, string),
            secret: self.optional(m, "access_key_secret", p, secret),
            file: self.optional(m, "access_key_secret_file", p, |s| Ok(PathBuf::from(s))),
            token: self.optional(m, "security_token", p, secret),
            profile: self.optional(m, "profile", p, string),
            role_arn: self.optional(m, "ram_role_arn", p, parse_role_arn),
            session: self.optional(m, "role_session_name", p, parse_session_name),
            external_id: self.optional(m, "external_id", p, string),
            policy: self.policy(m, p),
            duration: self.optional(
                m,
                "duration",
                p,
                duration_in(MIN_ROLE_DURATION, MAX_ROLE_DURATION),
            ),
            ecs: self.ecs_ram_role(m, p),
            oidc: match entry(m, "oidc") {
                Some((key, node)) => self.oidc(key.span(), node, &join(p, "oidc")),
                None => Field::Absent,
            },
            sts: self.optional(m, "sts_endpoint", p, parse_endpoint),
            metadata: self.optional(m, "metadata_endpoint", p, parse_metadata_endpoint),
        };
        if let Some(Node::Scalar(s)) = m.get_node("access_key_secret") {
            // Only a secret typed into the file makes the file itself sensitive.
            self.literal_secret |=
                !s.as_str().is_empty() && !is_null(s) && !s.as_str().contains("${");
        }
        self.check_credentials(key, m, &f, p);
        Some(CredentialsConfig {
            access_key_id: f.id.ok(),
            access_key_secret: f.secret.ok(),
            access_key_secret_file: f.file.ok(),
            security_token: f.token.ok(),
            profile: f.profile.ok(),
            ram_role_arn: f.role_arn.ok(),
            role_session_name: f.session.ok(),
            external_id: f.external_id.ok(),
            policy: f.policy.ok(),
            duration: f.duration.ok(),
            // The config type spells "discover" as an empty role name.
            ecs_ram_role: f.ecs.ok().map(|role| match role {
                EcsRole::Discover => String::new(),
                EcsRole::Named(name) => name,
            }),
            oidc: f.oidc.ok(),
            sts_endpoint: f.sts.ok(),
            metadata_endpoint: f.metadata.ok(),
        })
    }

    /// `credentials.policy`: a JSON object, kept as written since STS takes it as a string.
    fn policy(&mut self, m: &MarkedMappingNode, p: &str) -> Field<String> {
        if let Some(node @ (Node::Mapping(_) | Node::Sequence(_))) = m.get_node("policy") {
            // Unquoted `{"Version": ...}` is a YAML flow mapping, which reads as JSON to the eye.
            self.report(
                node.span(),
                format!(
                    "{}: expected the policy document as a JSON string; quote it, e.g. policy: '{{\"Version\": \"1\", \"Statement\": [...]}}'",
                    join(p, "policy")
                ),
            );
            return Field::Invalid;
        }
        self.optional(m, "policy", p, parse_policy)
    }

    /// `credentials.ecs_ram_role`, where an empty value is meaningful: unlike every other key, a
    /// bare `ecs_ram_role:` (null) or `ecs_ram_role: ""` asks to discover the role name from the
    /// metadata service, since there is no other way to spell that.
    fn ecs_ram_role(&mut self, m: &MarkedMappingNode, p: &str) -> Field<EcsRole> {
        let Some(node) = m.get_node("ecs_ram_role") else {
            return Field::Absent;
        };
        let path = join(p, "ecs_ram_role");
        match self.text(node, &path) {
            Field::Absent => Field::Set(EcsRole::Discover, *node.span()),
            Field::Set(role, span) if role.is_empty() => Field::Set(EcsRole::Discover, span),
            Field::Set(role, span) => match parse_ecs_role(&role) {
                Ok(()) => Field::Set(EcsRole::Named(role), span),
                Err(why) => {
                    self.report(&span, format!("{path}: {why}"));
                    Field::Invalid
                }
            },
            Field::Invalid => Field::Invalid,
        }
    }

    /// `credentials.oidc`, a mapping of three required keys; `key` is where `oidc:` is written.
    fn oidc(&mut self, key: &Span, node: &Node, path: &str) -> Field<OidcConfig> {
        let m = match self.mapping(node, path) {
            Field::Set(m, _) => m,
            Field::Absent => {
                self.report(
                    key,
                    format!(
                        "{path}: expected a mapping with role_arn, provider_arn and token_file, got an empty value"
                    ),
                );
                return Field::Invalid;
            }
            Field::Invalid => return Field::Invalid,
        };
        self.check_keys(m, path, OIDC_KEYS);
        let role_arn = self.optional(m, "role_arn", path, parse_role_arn);
        let provider_arn = self.optional(m, "provider_arn", path, parse_provider_arn);
        let token_file = self.optional(m, "token_file", path, |s| Ok(PathBuf::from(s)));
        for (name, set, what) in [
            (
                "role_arn",
                role_arn.given(),
                "the RAM role to assume, acs:ram::ACCOUNT:role/NAME",
            ),
            (
                "provider_arn",
                provider_arn.given(),
                "the OIDC provider registered in RAM, acs:ram::ACCOUNT:oidc-provider/NAME",
            ),
            (
                "token_file",
                token_file.given(),
                "the file holding the OIDC token, such as a projected service account token",
            ),
        ] {
            if !set {
                self.report(key, format!("{path}: {name} is required ({what})"));
            }
        }
        match (role_arn, provider_arn, token_file) {
            (Field::Set(role_arn, _), Field::Set(provider_arn, _), Field::Set(token_file, _)) => {
                Field::Set(
                    OidcConfig {
                        role_arn,
                        provider_arn,
                        token_file,
                    },
                    *key,
                )
            }
            _ => Field::Invalid,
        }
    }

    /// Cross-field rules. A value already reported as invalid still counts as given (it can be
    /// ambiguous with another source, and it satisfies what needs it), but it is not itself told
    /// that it needs something else, so one mistake yields one problem.
    fn check_credentials(
        &mut self,
        key: &Span,
        m: &MarkedMappingNode,
        f: &CredentialFields,
        p: &str,
    ) {
        let statics = [
            f.id.invalid(),
            f.secret.invalid(),
            f.file.invalid(),
            f.token.invalid(),
        ];
        if !statics.contains(&true) {
            self.check_static_keys(f, p);
        }

        let anything = [
            f.id.given(),
            f.secret.given(),
            f.file.given(),
            f.token.given(),
            f.profile.given(),
            f.role_arn.given(),
            f.session.given(),
            f.external_id.given(),
            f.policy.given(),
            f.duration.given(),
            f.ecs.given(),
            f.oidc.given(),
            f.sts.given(),
            f.metadata.given(),
        ];
        if !anything.contains(&true) {
            self.report(
                key,
                format!("{p}: no credentials given; set access_key_id with access_key_secret_file, profile, ram_role_arn, ecs_ram_role or oidc, or remove the section to use the default credential chain"),
            );
        }

        // Sources in file order; each conflicting one is reported once, against the first it clashes with.
        let key_at = |name: &str| entry(m, name).map(|(k, _)| *k.span());
        let mut sources: Vec<(Source, Span)> = [
            (Source::StaticKeys, f.id.given()),
            (Source::Profile, f.profile.given()),
            (Source::EcsRole, f.ecs.given()),
            (Source::Oidc, f.oidc.given()),
            (Source::AssumeRole, f.role_arn.given()),
        ]
        .into_iter()
        .filter(|(_, given)| *given)
        .filter_map(|(source, _)| key_at(source.key()).map(|at| (source, at)))
        .collect();
        sources.sort_by_key(|(_, at)| position(at));
        for (j, (later, at)) in sources.iter().enumerate() {
            let clash = sources[..j]
                .iter()
                .find(|(earlier, _)| !earlier.combines_with(*later));
            if let Some((earlier, _)) = clash {
                self.report(
                    at,
                    format!(
                        "{p}: ambiguous: both {} and {} are given; choose one source",
                        earlier.key(),
                        later.key()
                    ),
                );
            }
        }

        let role = f.role_arn.given();
        let oidc = f.oidc.given();
        if let (Some(at), false) = (f.session.present(), role || oidc) {
            self.report(
                &at,
                format!("{p}: role_session_name is set but neither ram_role_arn nor oidc is; it names the session of an assumed role, so set one of them or remove it"),
            );
        }
        if let (Some(at), false) = (f.duration.present(), role || oidc) {
            self.report(
                &at,
                format!("{p}: duration is set but neither ram_role_arn nor oidc is; it is the lifetime of an assumed role's credentials, so set one of them or remove it"),
            );
        }
        for (name, field) in [("external_id", &f.external_id), ("policy", &f.policy)] {
            if let (Some(at), false) = (field.present(), role) {
                self.report(
                    &at,
                    format!(
                        "{p}: {name} is set but ram_role_arn is not; it only applies to AssumeRole, so set ram_role_arn or remove it"
                    ),
                );
            }
        }
    }

    fn check_static_keys(&mut self, f: &CredentialFields, p: &str) {
        let (id, secret, file, token) = (&f.id, &f.secret, &f.file, &f.token);
        if let (Some(at), Some(_)) = (secret.present(), file.present()) {
            self.report(
                &at,
                format!("{p}: access_key_secret and access_key_secret_file are mutually exclusive; keep only one (preferably access_key_secret_file)"),
            );
        }
        let secret_source = secret
            .present()
            .map(|at| ("access_key_secret", at))
            .or_else(|| file.present().map(|at| ("access_key_secret_file", at)));
        match (id.present(), secret_source) {
            (Some(at), None) => self.report(
                &at,
                format!("{p}: access_key_id is set but neither access_key_secret nor access_key_secret_file is; set one of them"),
            ),
            (None, Some((name, at))) => self.report(
                &at,
                format!("{p}: {name} is set but access_key_id is not; set access_key_id too"),
            ),
            (None, None) => {
                if let Some(at) = token.present() {
                    self.report(
                        &at,
                        format!("{p}: security_token is set but access_key_id and access_key_secret are not; an STS token needs both"),
                    );
                }
            }
            (Some(_), Some(_)) => {}
        }
    }
}
