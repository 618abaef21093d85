"""What the SELinux renderer needs to know besides the rule set, as plain data.

Two kinds of facts, both gathered by the backend and handed to the pure renderer:
- PolicyFacts: about the installed policy (policyfacts.py reads it with setools): the classes
  and attributes that exist, the unconfined domain fromSource programs are modelled on, and for
  every type karmor clones, the attributes, roles and rules that name it.
- Inventory: about the files the rules name (inventory.py): their original contexts, what kind
  of file each is, whether its file system can carry a label, what a directory holds.
Both round-trip through JSON (the policy facts are cached per policy; tests keep fixtures).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# Rule kinds, as CIL spells them.
AV_KINDS = ("allow", "auditallow", "dontaudit")
TYPE_KINDS = ("typetransition", "typechange", "typemember")


@dataclass(frozen=True)
class TeRule:
    """One type-enforcement rule of the installed policy that names a type directly."""

    kind: str  # allow | auditallow | dontaudit | typetransition | typechange | typemember
    source: str
    target: str
    tclass: str
    perms: tuple[str, ...] = ()  # AV rules
    result: str = ""  # type rules
    filename: str = ""  # name-based type transitions
    cond: tuple[str, ...] = ()  # boolean condition in postfix: names and ! && || ^ == !=
    cond_block: bool = True  # the rule is in the true (or false) branch of `cond`


@dataclass(frozen=True)
class TypeInfo:
    """A type as karmor clones it: a new type with the same attributes, roles and rules."""

    name: str
    attributes: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()  # roles other than object_r that may hold the type
    rules: tuple[TeRule, ...] = ()  # rules naming the type itself (not through an attribute)


@dataclass(frozen=True)
class PolicyFacts:
    name: str  # SELINUXTYPE: default, targeted, ...
    reference: str  # the unconfined domain fromSource domains are cloned from ("" = none)
    transition_from: str  # attribute (or type) of the domains that enter fromSource domains
    attributes: frozenset[str] = frozenset()  # type attributes the policy has
    classes: dict[str, tuple[str, ...]] = field(default_factory=dict)  # class -> permissions
    polcaps: frozenset[str] = frozenset()
    types: dict[str, TypeInfo] = field(default_factory=dict)  # original types karmor clones
    unconfined: frozenset[str] = frozenset()  # the domains of `transition_from`
    mls: bool = True
    checksum: str = ""  # of the policy the facts were read from

    def type(self, name: str) -> TypeInfo:
        return self.types.get(name) or TypeInfo(name)

    def has_class(self, name: str) -> bool:
        return name in self.classes

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["attributes"] = sorted(self.attributes)
        doc["polcaps"] = sorted(self.polcaps)
        doc["unconfined"] = sorted(self.unconfined)
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> PolicyFacts:
        types = {
            name: TypeInfo(
                name=t["name"],
                attributes=tuple(t.get("attributes", ())),
                roles=tuple(t.get("roles", ())),
                rules=tuple(_te_rule(r) for r in t.get("rules", ())),
            )
            for name, t in doc.get("types", {}).items()
        }
        return cls(
            name=doc["name"],
            reference=doc.get("reference", ""),
            transition_from=doc.get("transition_from", ""),
            attributes=frozenset(doc.get("attributes", ())),
            classes={k: tuple(v) for k, v in doc.get("classes", {}).items()},
            polcaps=frozenset(doc.get("polcaps", ())),
            types=types,
            unconfined=frozenset(doc.get("unconfined", ())),
            mls=bool(doc.get("mls", True)),
            checksum=doc.get("checksum", ""),
        )


def _te_rule(doc: dict[str, Any]) -> TeRule:
    return TeRule(
        kind=doc["kind"],
        source=doc["source"],
        target=doc["target"],
        tclass=doc["tclass"],
        perms=tuple(doc.get("perms", ())),
        result=doc.get("result", ""),
        filename=doc.get("filename", ""),
        cond=tuple(doc.get("cond", ())),
        cond_block=bool(doc.get("cond_block", True)),
    )


# --- files ----------------------------------------------------------------------------------

# File kinds, named after their SELinux classes.
FILE_KINDS = ("file", "dir", "lnk_file", "chr_file", "blk_file", "sock_file", "fifo_file")
MISSING = "missing"


@dataclass(frozen=True)
class Inode:
    path: str
    kind: str  # one of FILE_KINDS, or "missing"
    context: str = ""  # the ORIGINAL context (before karmor relabelled it); "" unknown
    labelable: bool = False  # its file system keeps SELinux labels (mount option seclabel)
    why: str = ""  # why it cannot be labelled, or how its context was found
    dev: int = 0
    ino: int = 0

    @property
    def type(self) -> str:
        """The type field of the original context ("" when unknown)."""
        parts = self.context.split(":", 3)
        return parts[2] if len(parts) >= 3 else ""


@dataclass(frozen=True)
class Tree:
    """What a directory rule covers: the directory and the paths inside it (direct children
    when not recursive), as scanned. `truncated` when the scan stopped at its limit."""

    dir: str
    recursive: bool
    paths: tuple[str, ...] = ()
    truncated: bool = False


@dataclass(frozen=True)
class Inventory:
    inodes: dict[str, Inode] = field(default_factory=dict)  # every path the plan may label
    trees: dict[tuple[str, bool], Tree] = field(default_factory=dict)

    def get(self, path: str) -> Inode:
        return self.inodes.get(path) or Inode(path, MISSING, why="not scanned")

    def to_json(self) -> dict[str, Any]:
        return {
            "inodes": [asdict(i) for _, i in sorted(self.inodes.items())],
            "trees": [asdict(t) for _, t in sorted(self.trees.items())],
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Inventory:
        inodes = {d["path"]: Inode(**d) for d in doc.get("inodes", ())}
        trees = {}
        for d in doc.get("trees", ()):
            t = Tree(d["dir"], bool(d["recursive"]), tuple(d.get("paths", ())), bool(d.get("truncated", False)))
            trees[(t.dir, t.recursive)] = t
        return cls(inodes, trees)


@dataclass(frozen=True)
class Wanted:
    """The paths a rule set needs scanned before it can be rendered."""

    paths: frozenset[str] = frozenset()  # exact targets and fromSource programs
    trees: frozenset[tuple[str, bool]] = frozenset()  # (dir, recursive) of directory targets
