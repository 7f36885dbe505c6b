"""The one settings object: every knob, read from `AIYIELD_*` environment variables, validated at start-up.

Secrets are kept out of `repr()` so a settings object can be logged. Values that the CLI also takes as options
(`--prices`, ports) are applied on top with `dataclasses.replace`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from typing import Any, Mapping
from urllib.parse import urlsplit, urlunsplit

from aiyield.core.cardinality import Caps
from aiyield.core.crediting import Policy
from aiyield.core.finance import Budgets
from aiyield.core.org import Org, OrgError
from aiyield.core.provenance import DEFAULT_AI_TRAILERS, parse_trailers

EVENTS_TOPIC = "aiyield.events"
DLQ_TOPIC = "aiyield.dlq"
#: Internal: join-relevant events re-keyed by repo, so one worker owns each repo's join state.
JOIN_TOPIC = "aiyield.join"

#: Development fallback for the pseudonym key; the worker and gateway warn loudly when it is in use.
DEV_PSEUDONYM_KEY = "aiyield-development-key-change-me"

#: `AIYIELD_KAFKA_SECURITY_PROTOCOL` values (Kafka's `security.protocol`) and SASL mechanisms aiyield passes on.
KAFKA_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
KAFKA_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")

class SettingsError(ValueError):
    """A configuration mistake, reported at start-up with the variable's name."""


def _secret(default: str = "") -> str:
    return field(default=default, repr=False)


@dataclass(frozen=True)
class Settings:
    kafka: str | None = None
    redis: str | None = None
    prices: str | None = None
    partitions: int = 8
    pseudonym_key: str = _secret(DEV_PSEUDONYM_KEY)
    ingest_tokens: tuple[str, ...] = field(default=(), repr=False)
    github_secret: str = _secret()
    gitlab_token: str = _secret()
    #: Interface the gateway listens on. Loopback by default: listening beyond it needs credentials (or
    #: `allow_anonymous`). Containers set 0.0.0.0.
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8787
    #: OTLP over gRPC (MetricsService, LogsService), served by the gateway on `gateway_host`; 0 turns it off.
    otlp_grpc_port: int = 4317
    #: Accept unauthenticated writes on a gateway listening beyond loopback (rules without a credential are open).
    allow_anonymous: bool = False
    #: Seconds a connection may take to send complete request headers (from connecting or from the last answer).
    header_timeout_seconds: float = 10.0
    #: Seconds a request may take to send its whole body.
    body_timeout_seconds: float = 30.0
    #: Connections served at once; beyond, a 503 and the connection closed. Bounds memory with the body limit.
    max_connections: int = 256
    #: Requests per second per sender (ingest token, webhook, or anonymous address), bursts up to the burst size;
    #: beyond, 429 with Retry-After. 0 disables the limit.
    rate_limit_per_second: float = 100.0
    rate_limit_burst: int = 200
    #: Seconds a /readyz answer (Kafka reachable or not) is reused.
    ready_cache_seconds: float = 5.0
    metrics_port: int = 9464
    max_body_bytes: int = 5 * 1024 * 1024
    production_environments: frozenset[str] = frozenset({"production", "prod"})
    full_credit_lines: int = 10
    join_window_seconds: float = 7 * 86400
    survival_window_seconds: float = 86400
    #: Delivery grace of claims stamped with their arrival (scoped tokens, webhooks): such a claim ranks no earlier
    #: than its arrival minus this (contract v3 §2 "Rank time").
    claim_grace_seconds: float = 3600.0
    ai_trailers: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_AI_TRAILERS))
    team_attributes: tuple[str, ...] = ("team", "team.id", "team.name")
    otlp_log_tokens: bool = True
    #: Kafka messages per worker batch; each message carries up to ~100 events.
    batch_messages: int = 100
    batch_seconds: float = 0.2
    #: How long a producer waits for Kafka to acknowledge before giving up (the gateway then answers 503).
    publish_timeout_seconds: float = 30.0
    #: Prefix of every topic and of the consumer group: lets several pipelines (or test runs) share one cluster.
    namespace: str = ""
    #: The organisation file (AIYIELD_ORG), with AIYIELD_BUDGETS and AIYIELD_REPO_TEAMS folded in (subsets of it):
    #: teams' repos, members, cost centers, budgets, seat prices. Read and validated at start-up.
    org: Org = field(default_factory=Org)
    #: Cardinality guard: distinct teams / tools / models before new names are folded into `other`.
    caps: Caps = field(default_factory=Caps)
    #: A team that has never shipped is judged for usage without output once active this long (core/finance.py).
    waste_grace_seconds: float = 900.0
    #: Kafka transport security, applied to every Kafka client (`kafka_client_config`, `faust_broker_credentials`).
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = "PLAIN"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: str = _secret()
    #: CA bundle (PEM) that signs the brokers' certificates; the system's trust store when unset.
    kafka_ssl_cafile: str | None = None
    #: CA bundle (PEM) for a `rediss://` Redis; Redis user and password travel in the URL (`rediss://user:pass@host`).
    redis_ca_file: str | None = None
    #: `aiyield reconcile`: admin keys of the providers' cost APIs (a provider without a key is skipped), and their
    #: base URLs (tests point them at a local server).
    anthropic_admin_key: str = _secret()
    openai_admin_key: str = _secret()
    anthropic_api_url: str = "https://api.anthropic.com"
    openai_api_url: str = "https://api.openai.com"
    #: `aiyield pull` (docs/CONNECTORS.md): vendor credentials and base URLs. `github_enterprise`: read the
    #: enterprise's Copilot report instead of the organisation's. `claude_code_spend`: where Claude Code's spend comes from, `otel` (its
    #: OpenTelemetry cost metric, the default) or `analytics` (the Claude Code Analytics API): never both.
    github_token: str = _secret()
    github_org: str | None = None
    github_enterprise: str | None = None
    github_api_url: str = "https://api.github.com"
    cursor_api_key: str = _secret()
    cursor_api_url: str = "https://api.cursor.com"
    claude_code_spend: str = "otel"

    def __repr__(self) -> str:
        # Secret fields are left out (repr=False) and a password inside the Redis URL is masked.
        shown = ", ".join(
            f"{f.name}={redact_url(getattr(self, f.name)) if f.name == 'redis' else getattr(self, f.name)!r}"
            for f in fields(self) if f.repr
        )
        return f"Settings({shown})"

    def kafka_client_config(self) -> dict[str, Any]:
        """librdkafka (confluent-kafka) configuration of every producer, consumer and admin client: the bootstrap
        servers plus transport security. The one place these settings become client options."""
        config: dict[str, Any] = {"bootstrap.servers": self.kafka}
        if self.kafka_security_protocol != "PLAINTEXT":
            config["security.protocol"] = self.kafka_security_protocol
        if self.kafka_security_protocol.startswith("SASL_"):
            config["sasl.mechanism"] = self.kafka_sasl_mechanism
            config["sasl.username"] = self.kafka_sasl_username
            config["sasl.password"] = self.kafka_sasl_password
        if self.kafka_security_protocol.endswith("SSL") and self.kafka_ssl_cafile:
            config["ssl.ca.location"] = self.kafka_ssl_cafile
        return config

    def faust_broker_credentials(self) -> Any:
        """The same security for the faust worker (its aiokafka clients): faust's `broker_credentials`, or None."""
        if self.kafka_security_protocol == "PLAINTEXT":
            return None
        import ssl

        import faust

        context = None
        if self.kafka_security_protocol.endswith("SSL"):
            context = ssl.create_default_context(cafile=self.kafka_ssl_cafile)
        if self.kafka_security_protocol == "SSL":
            return faust.SSLCredentials(context)
        return faust.SASLCredentials(
            username=self.kafka_sasl_username, password=self.kafka_sasl_password, ssl_context=context,
            mechanism=self.kafka_sasl_mechanism,
        )

    def redis_client_options(self) -> dict[str, Any]:
        """Keyword arguments for a Redis client beyond the URL (`redisconn.client` adds them; the URL carries the scheme,
        `rediss://` for TLS, and the ACL user and password)."""
        return {"ssl_ca_certs": self.redis_ca_file} if self.redis_ca_file else {}

    @property
    def events_topic(self) -> str:
        return self.namespace + EVENTS_TOPIC

    @property
    def dlq_topic(self) -> str:
        return self.namespace + DLQ_TOPIC

    @property
    def join_topic(self) -> str:
        return self.namespace + JOIN_TOPIC

    @property
    def topics(self) -> tuple[str, str, str]:
        return (self.events_topic, self.dlq_topic, self.join_topic)

    @property
    def policy(self) -> Policy:
        return Policy(
            production_environments=self.production_environments,
            full_credit_lines=self.full_credit_lines,
            join_window=self.join_window_seconds,
            survival_window=self.survival_window_seconds,
            claim_grace=self.claim_grace_seconds,
        )

    @property
    def budgets(self) -> Budgets:
        return self.org.budgets

    @property
    def using_dev_pseudonym_key(self) -> bool:
        return self.pseudonym_key == DEV_PSEUDONYM_KEY

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        kw: dict = {}

        def get(name: str) -> str | None:
            value = env.get("AIYIELD_" + name)
            return value if value not in (None, "") else None

        def number(name: str, kind: type, minimum: float) -> None:
            raw = get(name)
            if raw is None:
                return
            try:
                value = kind(raw)
            except ValueError:
                raise SettingsError(f"AIYIELD_{name}={raw!r} is not a {kind.__name__}") from None
            if value < minimum:
                raise SettingsError(f"AIYIELD_{name} must be >= {minimum}, got {raw}")
            kw[name.lower()] = value

        for name in ("KAFKA", "REDIS", "PRICES", "PSEUDONYM_KEY", "GITHUB_SECRET", "GITLAB_TOKEN", "NAMESPACE", "GATEWAY_HOST",
                     "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD", "KAFKA_SSL_CAFILE", "REDIS_CA_FILE",
                     "ANTHROPIC_ADMIN_KEY", "OPENAI_ADMIN_KEY", "GITHUB_TOKEN", "GITHUB_ORG", "GITHUB_ENTERPRISE",
                     "CURSOR_API_KEY"):
            if get(name) is not None:
                kw[name.lower()] = get(name)
        if get("CLAUDE_CODE_SPEND") is not None:
            if get("CLAUDE_CODE_SPEND") not in ("otel", "analytics"):
                raise SettingsError(f"AIYIELD_CLAUDE_CODE_SPEND={get('CLAUDE_CODE_SPEND')!r}: expected otel or analytics")
            kw["claude_code_spend"] = get("CLAUDE_CODE_SPEND")
        for name in ("ANTHROPIC_API_URL", "OPENAI_API_URL", "GITHUB_API_URL", "CURSOR_API_URL"):
            if get(name) is not None:
                if urlsplit(get(name)).scheme not in ("http", "https") or not urlsplit(get(name)).netloc:
                    raise SettingsError(f"AIYIELD_{name}={get(name)!r}: expected an http:// or https:// URL")
                kw[name.lower()] = get(name).rstrip("/")
        _transport_security(get, kw)
        number("PARTITIONS", int, 1)
        number("GATEWAY_PORT", int, 0)
        number("OTLP_GRPC_PORT", int, 0)
        number("METRICS_PORT", int, 0)
        number("MAX_BODY_BYTES", int, 1024)
        number("FULL_CREDIT_LINES", int, 1)
        number("JOIN_WINDOW_SECONDS", float, 60)
        number("SURVIVAL_WINDOW_SECONDS", float, 0)
        number("CLAIM_GRACE_SECONDS", float, 0)
        number("BATCH_MESSAGES", int, 1)
        number("BATCH_SECONDS", float, 0.001)
        number("PUBLISH_TIMEOUT_SECONDS", float, 0.1)
        number("HEADER_TIMEOUT_SECONDS", float, 0.1)
        number("BODY_TIMEOUT_SECONDS", float, 0.1)
        number("MAX_CONNECTIONS", int, 0)
        number("RATE_LIMIT_PER_SECOND", float, 0)
        number("RATE_LIMIT_BURST", int, 1)
        number("READY_CACHE_SECONDS", float, 0)
        if get("ALLOW_ANONYMOUS"):
            kw["allow_anonymous"] = _boolean("ALLOW_ANONYMOUS", get("ALLOW_ANONYMOUS"))
        number("WASTE_GRACE_SECONDS", float, 0)
        if get("INGEST_TOKENS"):
            kw["ingest_tokens"] = tuple(t.strip() for t in get("INGEST_TOKENS").split(",") if t.strip())
        if get("PRODUCTION_ENVIRONMENTS"):
            kw["production_environments"] = frozenset(
                e.strip() for e in get("PRODUCTION_ENVIRONMENTS").split(",") if e.strip()
            )
        if get("AI_TRAILERS"):
            kw["ai_trailers"] = ai_trailers_from_env(env)
        if get("TEAM_ATTRIBUTES"):
            kw["team_attributes"] = tuple(a.strip() for a in get("TEAM_ATTRIBUTES").split(",") if a.strip())
        if get("OTLP_LOG_TOKENS"):
            kw["otlp_log_tokens"] = get("OTLP_LOG_TOKENS").lower() in ("1", "true", "yes", "on")
        kw["org"] = _org(get)
        caps = {}
        for label in ("TEAMS", "TOOLS", "MODELS"):
            number(f"MAX_{label}", int, 1)
            if f"max_{label.lower()}" in kw:
                caps[label.lower()[:-1]] = kw.pop(f"max_{label.lower()}")
        if caps:
            kw["caps"] = Caps(**caps)
        return cls(**kw)

    def with_overrides(self, **changes) -> "Settings":
        """Apply CLI options (None means "not given")."""
        known = {f.name for f in fields(self)}
        return replace(self, **{k: v for k, v in changes.items() if v is not None and k in known})


def ai_trailers_from_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """`AIYIELD_AI_TRAILERS` alone (the built-in table when unset or empty).

    The git hooks read this one variable rather than all settings, so an unrelated mistake elsewhere in the
    environment cannot silence them.
    """
    raw = (os.environ if env is None else env).get("AIYIELD_AI_TRAILERS")
    if not raw:
        return dict(DEFAULT_AI_TRAILERS)
    try:
        return parse_trailers(raw)
    except ValueError as exc:
        raise SettingsError(f"AIYIELD_AI_TRAILERS: {exc}") from None


def _transport_security(get, kw: dict) -> None:
    """Check the Kafka and Redis security settings together, naming the variable at fault."""
    protocol = (get("KAFKA_SECURITY_PROTOCOL") or "PLAINTEXT").upper()
    if protocol not in KAFKA_SECURITY_PROTOCOLS:
        raise SettingsError(f"AIYIELD_KAFKA_SECURITY_PROTOCOL={protocol!r}: expected one of {', '.join(KAFKA_SECURITY_PROTOCOLS)}")
    kw["kafka_security_protocol"] = protocol
    mechanism = (get("KAFKA_SASL_MECHANISM") or "PLAIN").upper()
    if mechanism not in KAFKA_SASL_MECHANISMS:
        raise SettingsError(f"AIYIELD_KAFKA_SASL_MECHANISM={mechanism!r}: expected one of {', '.join(KAFKA_SASL_MECHANISMS)}")
    kw["kafka_sasl_mechanism"] = mechanism
    if protocol.startswith("SASL_"):
        for name in ("KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"):
            if get(name) is None:
                raise SettingsError(f"AIYIELD_KAFKA_SECURITY_PROTOCOL={protocol} needs AIYIELD_{name}")
    elif get("KAFKA_SASL_USERNAME") or get("KAFKA_SASL_PASSWORD"):
        raise SettingsError(f"AIYIELD_KAFKA_SASL_USERNAME/PASSWORD are set but AIYIELD_KAFKA_SECURITY_PROTOCOL={protocol} "
                            "uses no SASL: set it to SASL_SSL (or SASL_PLAINTEXT)")
    if get("KAFKA_SSL_CAFILE") and not protocol.endswith("SSL"):
        raise SettingsError(f"AIYIELD_KAFKA_SSL_CAFILE is set but AIYIELD_KAFKA_SECURITY_PROTOCOL={protocol} uses no TLS")
    for name in ("KAFKA_SSL_CAFILE", "REDIS_CA_FILE"):
        if get(name) is not None and not os.path.isfile(get(name)):
            raise SettingsError(f"AIYIELD_{name}={get(name)!r} is not a readable file")
    redis_url = get("REDIS")
    if redis_url is not None:
        from aiyield.redisconn import parse  # the owner of the URL forms; it imports this module

        parse(redis_url)
    if get("REDIS_CA_FILE") and redis_url is not None and urlsplit(redis_url).scheme != "rediss":
        raise SettingsError("AIYIELD_REDIS_CA_FILE is set but AIYIELD_REDIS is not a rediss:// (TLS) URL")


def _org(get) -> Org:
    """AIYIELD_ORG, then AIYIELD_BUDGETS and AIYIELD_REPO_TEAMS on top (both are subsets of an organisation file)."""
    org = Org()
    for name in ("ORG", "BUDGETS"):
        if get(name):
            try:
                org = org.merged(Org.load(get(name)))
            except OrgError as exc:
                raise SettingsError(f"AIYIELD_{name}: {exc}") from None
    if get("REPO_TEAMS"):
        org = org.merged(Org.from_repo_teams(_pairs("REPO_TEAMS", get("REPO_TEAMS"))))
    return org


def redact_url(url: str | None) -> str | None:
    """A URL fit for logs and `repr`: its password replaced by `***`."""
    if not url:
        return url
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _boolean(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"AIYIELD_{name}={raw!r} is not a boolean (true or false)")


def _pairs(name: str, raw: str) -> dict[str, str]:
    out = {}
    for part in raw.split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise SettingsError(f"AIYIELD_{name}: expected `key=value,...`, got {part!r}")
        out[key.strip()] = value.strip()
    return out
