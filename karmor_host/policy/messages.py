"""Every message the policy validator can emit, as templates in one place.

They are part of the user interface (CI greps them, editors show them) and tests compare whole
lines against them, so change them deliberately. A message states the rule that was broken; the
field path in front of it (`spec.file.matchPaths[2].path:`) says where.
"""

from __future__ import annotations

# -- document shape ---------------------------------------------------------------------------
E_DOCUMENT = "a policy document must be a mapping of apiVersion, kind, metadata and spec; got {got}"
E_TYPE = "must be {expected}; got {got}"
E_REQUIRED = "required field is missing"
E_UNKNOWN = "unknown field {key!r}; {hint}"
HINT_CLOSE = "did you mean {close!r}?"
HINT_ALLOWED = "expected one of: {allowed}"
E_KEY_TYPE = "field names must be plain strings; got {got}"
E_DUPLICATE_KEY = "duplicate field {key!r}; it is already set on line {line}"
E_MERGE_KEY = "YAML merge keys (<<) are not supported in policies; write the fields out"
E_API_VERSION = "must be 'security.kubearmor.com/v1'; got {got}"
E_KIND = "unsupported kind {got}; supported kinds: KubeArmorHostPolicy, KubeArmorNetworkPolicy"
E_NAME = (
    "must be a DNS-1123 name (lower-case letters, digits, '-' and '.', starting and ending"
    " with a letter or digit, at most 253 characters); got {got}"
)
W_NO_DOCUMENTS = "file holds no policy documents"
W_NO_POLICY_FILES = "directory holds no *.yaml or *.yml files"
E_DUPLICATE_NAME = "policy {name!r} is already defined at {first}; the first definition wins"
W_NAMESPACE = "host policies are cluster-wide; namespace is ignored"
W_STATUS = "status is written by the cluster, not by users; ignored"
E_APPARMOR = (
    "raw AppArmor profiles are not supported; write the rules as process, file, network"
    " or capabilities sections"
)
E_NO_SECTIONS = (
    "policy has no rules: give at least one of process, file, network, capabilities, syscalls"
)
E_EMPTY_SECTION = "section has no rules: give at least one entry in {keys}"

# -- nodeSelector -----------------------------------------------------------------------------
E_SELECTOR_EMPTY = (
    'must name at least one label; use kubearmor.io/hostname: "*" to select every host'
)
E_LABEL_KEY = "label names must be non-empty and contain no spaces; got {got}"
W_LABEL_STRING = "label values are strings; assumed {fixed!r}"
E_HOSTNAMEREG = (
    "must be a glob such as 'web-*', or a regular expression starting with '^'; {what}"
)

# -- inheritable attributes -------------------------------------------------------------------
E_SEVERITY = "must be a whole number in 1..10; got {got}"
W_SEVERITY_STRING = "severity is written as a string; assumed the number {value}"
E_ACTION = "must be Allow, Audit or Block; got {got}"
W_ACTION_CASE = "action {got!r} is not written as Allow, Audit or Block; assumed {fixed!r}"
E_SYSCALL_ACTION = "syscall rules are always Audit and take no action"
W_ALLOW_NO_SOURCE = (
    "Allow without fromSource makes the {category} category a host-wide whitelist: everything"
    " no Allow rule names falls to the default posture (KubeArmor ignores such rules)"
)
E_EMPTY = "must not be empty"
W_SCALAR_LIST = "should be a list; assumed [{value!r}]"

# -- paths ------------------------------------------------------------------------------------
E_PATH_ABSOLUTE = "must be an absolute path starting with '/'; got {got}"
E_PATH_TRAILING = (
    "a file path must not end with '/' (use matchDirectories and dir: for a directory); got {got}"
)
E_PATH_LONG = "is {length} characters long; at most {limit} are allowed"
E_PATH_CHARS = "must not contain NUL or line breaks"
E_PATH_DOTDOT = "must not contain '..' components; got {got}"
W_PATH_NORMAL = "path has empty or '.' components; assumed {fixed!r}"
W_DIR_SLASH = "a dir must end with '/'; assumed {fixed!r}"
E_EXECNAME = "execname is a bare program name and must not contain '/' (use path:); got {got}"
E_PATH_AND_EXECNAME = "give either path or execname, not both"
E_PATH_OR_EXECNAME = "one of path or execname is required"
W_RECURSIVE_FILE = "recursive only applies to a directory (a path ending in '/'); ignored"

# -- names ------------------------------------------------------------------------------------
E_LIST_ITEM_EMPTY = "comma list has an empty item: {got}"
E_PROTOCOL = "unknown protocol {got}{hint}; expected one of {allowed} (or a comma list of them)"
W_PROTOCOL_CASE = "protocol {got!r} is not lower-case; assumed {fixed!r}"
E_CAPABILITY = (
    "unknown capability {got}{hint}; expected a Linux capability name without cap_,"
    " e.g. net_raw or sys_admin"
)
W_CAPABILITY_FORM = "capability {got!r} is not a lower-case name without cap_; assumed {fixed!r}"
E_SYSCALL = "unknown x86_64 syscall {got}{hint}"
W_SYSCALL_FORM = "syscall {got!r} is not a lower-case name without sys_; assumed {fixed!r}"
HINT_NAME = " (did you mean {close!r}?)"

# -- fromSource -------------------------------------------------------------------------------
E_FROMSOURCE_REQUIRED = (
    "fromSource is required for {section} rules in a KubeArmorHostPolicy: name the programs"
    " the rule is about"
)
E_SOURCE_ONE_OF = "a fromSource entry needs exactly one of {keys}"
W_SOURCE_STRING = "fromSource entries are mappings; assumed {{path: {value}}}"
