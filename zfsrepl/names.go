package zfsrepl

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalidName is wrapped by every name validation failure. Names are
// checked before any zfs command runs, so an option-looking or malformed
// name never reaches exec.
var ErrInvalidName = errors.New("invalid ZFS name")

// maxNameLen is ZFS_MAX_DATASET_NAME_LEN (256) minus the terminating NUL.
const maxNameLen = 255

// NameError says which name was refused and why.
type NameError struct {
	Name   string
	Kind   string // "dataset", "snapshot", "bookmark", "snapshot name", "hold tag"
	Reason string
}

func (e *NameError) Error() string {
	return fmt.Sprintf("invalid %s name %q: %s", e.Kind, e.Name, e.Reason)
}

func (e *NameError) Unwrap() error { return ErrInvalidName }

// ExitCode maps a bad name to the usage exit code.
func (e *NameError) ExitCode() int { return 2 }

// ValidateDataset checks a filesystem or volume name such as "tank/a/b".
func ValidateDataset(name string) error {
	if strings.ContainsAny(name, "@#") {
		return &NameError{name, "dataset", "must not contain '@' or '#' (that is a snapshot or bookmark)"}
	}
	return validatePath(name, "dataset")
}

// ValidateSnapshot checks a full snapshot name such as "tank/a@s1".
func ValidateSnapshot(name string) error {
	return validateVersion(name, '@', "snapshot")
}

// ValidateBookmark checks a full bookmark name such as "tank/a#b1".
func ValidateBookmark(name string) error {
	return validateVersion(name, '#', "bookmark")
}

// ValidateSnapshotOrBookmark accepts either form, e.g. an incremental base.
func ValidateSnapshotOrBookmark(name string) error {
	if strings.Contains(name, "#") {
		return ValidateBookmark(name)
	}
	return ValidateSnapshot(name)
}

// ValidateShortName checks the part after '@' or '#' on its own.
func ValidateShortName(short string) error {
	return validateComponent(short, short, "snapshot name")
}

// ValidateHoldTag checks a hold tag: any printable text, but not empty, not
// option-looking and within ZFS's length limit.
func ValidateHoldTag(tag string) error {
	switch {
	case tag == "":
		return &NameError{tag, "hold tag", "is empty"}
	case strings.HasPrefix(tag, "-"):
		return &NameError{tag, "hold tag", "must not start with '-'"}
	case len(tag) > maxNameLen:
		return &NameError{tag, "hold tag", fmt.Sprintf("is longer than %d bytes", maxNameLen)}
	}
	for _, r := range tag {
		if r < 0x20 || r == 0x7f {
			return &NameError{tag, "hold tag", "contains a control character"}
		}
	}
	return nil
}

func validateVersion(name string, sep byte, kind string) error {
	i := strings.IndexByte(name, sep)
	if i < 0 {
		return &NameError{name, kind, fmt.Sprintf("missing '%c' (expected DATASET%cNAME)", sep, sep)}
	}
	other := byte('#')
	if sep == '#' {
		other = '@'
	}
	if strings.IndexByte(name, other) >= 0 || strings.IndexByte(name[i+1:], sep) >= 0 {
		return &NameError{name, kind, "must contain exactly one '@' or '#'"}
	}
	if err := validatePath(name[:i], kind); err != nil {
		return err
	}
	if len(name) > maxNameLen {
		return &NameError{name, kind, fmt.Sprintf("is longer than %d bytes", maxNameLen)}
	}
	return validateComponent(name, name[i+1:], kind)
}

func validatePath(name, kind string) error {
	switch {
	case name == "":
		return &NameError{name, kind, "is empty"}
	case len(name) > maxNameLen:
		return &NameError{name, kind, fmt.Sprintf("is longer than %d bytes", maxNameLen)}
	case strings.HasPrefix(name, "/"):
		return &NameError{name, kind, "must not start with '/' (a dataset name is POOL/PATH, not a mountpoint)"}
	}
	parts := strings.Split(name, "/")
	pool := parts[0]
	if c := pool[0]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') && pool != "" {
		return &NameError{name, kind, "the pool name must start with a letter"}
	}
	for _, p := range parts {
		if err := validateComponent(name, p, kind); err != nil {
			return err
		}
	}
	return nil
}

func validateComponent(full, c, kind string) error {
	switch {
	case c == "":
		return &NameError{full, kind, "has an empty component"}
	case c == "." || c == "..":
		return &NameError{full, kind, "has a '.' or '..' component"}
	case strings.HasPrefix(c, "-"):
		return &NameError{full, kind, "a component starts with '-' and would be read as an option"}
	}
	for _, r := range c {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
			r == '_' || r == '-' || r == ':' || r == '.' || r == ' ') {
			return &NameError{full, kind, fmt.Sprintf("character %q is not allowed (use letters, digits, '_', '-', ':', '.', ' ')", r)}
		}
	}
	return nil
}

// SplitVersion splits "ds@snap" or "ds#bm" into dataset, separator and short name.
func SplitVersion(name string) (dataset string, sep byte, short string, ok bool) {
	i := strings.IndexAny(name, "@#")
	if i < 0 {
		return name, 0, "", false
	}
	return name[:i], name[i], name[i+1:], true
}
