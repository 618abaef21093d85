"""Facts about the installed SELinux policy, read from its binary with setools.

One pass over the policy's type-enforcement rules collects every rule that names one of the
wanted types directly (not through an attribute): what a clone of that type must copy. The
result is cached per policy checksum in the agent's state directory, type by type, because a
pass costs about a second here and ten under emulation.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

from karmor_host.enforce.selinux.facts import AV_KINDS, PolicyFacts, TeRule, TypeInfo

# The unconfined domain a fromSource program's domain is a copy of, best first: on Fedora and
# RHEL systemd services with generic binaries run as unconfined_service_t; elsewhere (and for
# users) unconfined_t is the unconfined domain.
REFERENCES = ("unconfined_service_t", "unconfined_t")
TRANSITION_FROM = "unconfined_domain_type"
_RULE_KINDS = {
    "allow": "allow", "auditallow": "auditallow", "dontaudit": "dontaudit",
    "type_transition": "typetransition", "type_change": "typechange", "type_member": "typemember",
}
CACHE_VERSION = 1


class PolicyUnavailable(Exception):
    pass


def selinux_type(root: Path = Path("/")) -> str:
    """SELINUXTYPE from <root>/etc/selinux/config ("" when there is none)."""
    try:
        text = (root / "etc/selinux/config").read_text()
    except OSError:
        return ""
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key.strip() == "SELINUXTYPE":
            return value.strip().strip('"')
    return ""


def policy_file(root: Path = Path("/")) -> Path:
    """The binary policy of the configured policy type under `root` (newest version)."""
    name = selinux_type(root)
    if not name:
        raise PolicyUnavailable(f"no SELinux policy configured ({root / 'etc/selinux/config'} has no SELINUXTYPE)")
    files = sorted((root / "etc/selinux" / name / "policy").glob("policy.[0-9]*"),
                   key=lambda p: int(p.suffix[1:]) if p.suffix[1:].isdigit() else 0)
    if not files:
        raise PolicyUnavailable(f"no binary policy under {root / 'etc/selinux' / name / 'policy'}")
    return files[-1]


OWN_PREFIX = "karmor_"  # karmor's own types and attributes: never facts about the policy
OWN_MODULE = "karmor"


def checksum(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:32]


def store_key(store: Path) -> str:
    """A checksum of a module store without karmor's own module: the policy facts depend on
    it only, so installing or replacing karmor's module keeps the cached facts valid."""
    h = hashlib.sha256()
    for path in sorted((store / "modules").rglob("*")):
        rel = path.relative_to(store / "modules")
        if OWN_MODULE in rel.parts or not path.is_file():
            continue
        h.update(str(rel).encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()[:32]


def _ours(name: str) -> bool:
    return name.startswith(OWN_PREFIX)


def _setools():
    try:
        import setools  # noqa: PLC0415 - Debian's python3-setools, only where SELinux is used
    except ImportError as exc:
        raise PolicyUnavailable("python3-setools is not installed (it reads the installed policy)") from exc
    return setools


def _cond(rule) -> tuple[tuple[str, ...], bool]:
    setools = _setools()
    try:
        cond = rule.conditional
    except setools.exception.RuleNotConditional:
        return (), True
    return tuple(str(t) for t in cond.expression()), bool(rule.conditional_block)


def _te(rule) -> TeRule:
    kind = _RULE_KINDS[str(rule.ruletype)]
    cond, block = _cond(rule)
    if kind in AV_KINDS:
        return TeRule(kind, str(rule.source), str(rule.target), str(rule.tclass),
                      perms=tuple(sorted(str(p) for p in rule.perms)), cond=cond, cond_block=block)
    try:
        filename = str(rule.filename)
    except Exception:  # noqa: BLE001 - setools raises its own TERuleNoFilename
        filename = ""
    return TeRule(kind, str(rule.source), str(rule.target), str(rule.tclass), result=str(rule.default),
                  filename=filename, cond=cond, cond_block=block)


def read(path: Path, wanted: Iterable[str], name: str = "", cache_dir: Path | None = None,
         key: str = "") -> PolicyFacts:
    """PolicyFacts for the policy at `path`, with TypeInfo for the reference domain and every
    type in `wanted` (types the policy does not have are left out). karmor's own types, rules
    and attributes are left out, so the facts are the same with or without its module; `key`
    (default: the policy file's checksum) names the cache entry."""
    sum_ = key or checksum(path)
    cache, absent = _load_cache(cache_dir, sum_)
    want = set(wanted)
    if cache is not None and want <= set(cache.types) | absent:
        return _subset(cache, want)
    setools = _setools()
    pol = setools.SELinuxPolicy(str(path))
    types = {str(t) for t in pol.types() if not _ours(str(t))}
    reference = next((r for r in REFERENCES if r in types), "")
    attributes = frozenset(str(a) for a in pol.typeattributes() if not _ours(str(a)))
    transition_from = TRANSITION_FROM if TRANSITION_FROM in attributes else reference
    todo = {t for t in want | {reference} if t in types}
    if cache is not None:
        todo -= set(cache.types)
    infos = dict(cache.types) if cache is not None else {}
    infos.update(_collect(pol, todo))
    if transition_from in attributes:
        unconfined = {str(t) for t in pol.lookup_typeattr(transition_from).expand() if not _ours(str(t))}
    else:
        unconfined = {reference} if reference else set()
    classes = {}
    for cls in pol.classes():
        perms = set(str(p) for p in cls.perms)
        try:
            perms |= set(str(p) for p in cls.common.perms)
        except Exception:  # noqa: BLE001 - setools raises NoCommon for classes without one
            pass
        classes[str(cls)] = tuple(sorted(perms))
    facts = PolicyFacts(
        name=name or path.parent.parent.name,
        reference=reference,
        transition_from=transition_from,
        attributes=attributes,
        classes=classes,
        polcaps=frozenset(str(c) for c in pol.polcaps()),
        types=infos,
        unconfined=frozenset(unconfined),
        mls=bool(pol.mls),
        checksum=sum_,
    )
    _save_cache(cache_dir, facts, absent | (want - types))
    return _subset(facts, want)


def _subset(facts: PolicyFacts, want: set[str]) -> PolicyFacts:
    keep = want | {facts.reference}
    return PolicyFacts(**{**facts.__dict__, "types": {k: v for k, v in facts.types.items() if k in keep}})


def _collect(pol, names: set[str]) -> dict[str, TypeInfo]:
    if not names:
        return {}
    rules: dict[str, list[TeRule]] = {n: [] for n in names}
    for rule in pol.terules():
        kind = str(rule.ruletype)
        if kind not in _RULE_KINDS:
            continue  # extended permission rules (allowxperm ...) are not copied
        src, tgt = str(rule.source), str(rule.target)
        hit = {src, tgt} & names
        if not hit or _ours(src) or _ours(tgt):
            continue
        te = _te(rule)
        if _ours(te.result):
            continue
        for n in hit:
            rules[n].append(te)
    roles: dict[str, list[str]] = {n: [] for n in names}
    for role in pol.roles():
        rname = str(role)
        if rname == "object_r":
            continue
        members = {str(t) for t in role.types()}
        for n in names & members:
            roles[n].append(rname)
    out = {}
    for n in sorted(names):
        t = pol.lookup_type(n)
        out[n] = TypeInfo(
            name=n,
            attributes=tuple(sorted(str(a) for a in t.attributes() if not _ours(str(a)))),
            roles=tuple(sorted(roles[n])),
            rules=tuple(sorted(rules[n], key=_rule_key)),
        )
    return out


def _rule_key(r: TeRule) -> tuple:
    return (r.kind, r.source, r.target, r.tclass, r.perms, r.result, r.filename, r.cond, r.cond_block)


def _cache_path(cache_dir: Path, sum_: str) -> Path:
    return cache_dir / f"policyfacts-{sum_}.json"


def _load_cache(cache_dir: Path | None, sum_: str) -> tuple[PolicyFacts | None, set[str]]:
    if cache_dir is None:
        return None, set()
    try:
        doc = json.loads(_cache_path(cache_dir, sum_).read_text())
    except (OSError, ValueError):
        return None, set()
    if doc.get("version") != CACHE_VERSION:
        return None, set()
    return PolicyFacts.from_json(doc["facts"]), set(doc.get("absent", ()))


def _save_cache(cache_dir: Path | None, facts: PolicyFacts, absent: set[str]) -> None:
    if cache_dir is None:
        return
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        for old in cache_dir.glob("policyfacts-*.json"):
            if old.name != _cache_path(cache_dir, facts.checksum).name:
                old.unlink(missing_ok=True)
        path = _cache_path(cache_dir, facts.checksum)
        tmp = path.with_suffix(".tmp")
        doc = {"version": CACHE_VERSION, "facts": facts.to_json(), "absent": sorted(absent)}
        tmp.write_text(json.dumps(doc, sort_keys=True))
        os.replace(tmp, path)
    except OSError:
        pass  # a cache that cannot be written only costs time
