"""A validated KubeArmorHostPolicy, as plain frozen data.

validate.py builds these from YAML nodes; compile.py turns them into a RuleSet. Values here are
already normalised (action title-cased, protocols and capabilities lower-case without `cap_`,
`dir` ending in "/"), but nothing is canonicalised against the filesystem yet: that is
compile.py's job, so a policy validates the same way on every machine.
"""

from __future__ import annotations

from dataclasses import dataclass

from karmor_host.policy.ruleset import Action, Operation, TargetKind

API_VERSION = "security.kubearmor.com/v1"
KIND_HOST_POLICY = "KubeArmorHostPolicy"
KIND_NETWORK_POLICY = "KubeArmorNetworkPolicy"


@dataclass(frozen=True)
class Meta:
    """The inheritable attributes: each level may set them; None means "inherit"."""

    severity: int | None = None
    tags: tuple[str, ...] | None = None
    message: str | None = None
    action: Action | None = None


@dataclass(frozen=True)
class SourceSpec:
    """One fromSource entry as written (after validation)."""

    path: str  # absolute; ends with "/" when is_dir
    is_dir: bool = False
    recursive: bool = False
    line: int = 0


@dataclass(frozen=True)
class RuleSpec:
    """One rule of one section, e.g. one `file.matchPaths` entry.

    `targets` holds several values only where the language allows a list in one rule: comma
    lists of protocols/capabilities and `syscall: [..]` lists of matchSyscalls. For
    syscalls.matchPaths, `targets` is the path and `syscalls` the audited syscalls.
    """

    operation: Operation
    kind: TargetKind
    targets: tuple[str, ...]
    field: str  # e.g. spec.file.matchPaths[2]
    line: int
    col: int
    meta: Meta = Meta()
    sources: tuple[SourceSpec, ...] = ()
    recursive: bool = False
    read_only: bool = False
    owner_only: bool = False
    syscalls: tuple[str, ...] = ()


@dataclass(frozen=True)
class Section:
    """One of process, file, network, capabilities, syscalls."""

    operation: Operation
    meta: Meta
    rules: tuple[RuleSpec, ...]
    line: int


@dataclass(frozen=True)
class HostPolicy:
    name: str
    file: str
    line: int  # line of the document's first key
    name_line: int  # line of metadata.name, for duplicate reports
    name_col: int
    node_selector: tuple[tuple[str, str], ...]  # matchLabels, in file order
    meta: Meta
    sections: tuple[Section, ...]  # in the order process, file, network, capabilities, syscalls

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.node_selector)

    def section(self, operation: Operation) -> Section | None:
        for s in self.sections:
            if s.operation is operation:
                return s
        return None

    @property
    def where(self) -> str:
        return f"{self.file}:{self.name_line}:{self.name_col}"
