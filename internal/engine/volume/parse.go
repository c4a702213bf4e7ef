package volume

import (
	"encoding/csv"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/berth/berth/internal/errdefs"
	"github.com/berth/berth/internal/units"
)

// MountType is the kind of a mount.
type MountType string

// The mount types Docker has and berth supports.
const (
	TypeVolume MountType = "volume"
	TypeBind   MountType = "bind"
	TypeTmpfs  MountType = "tmpfs"
)

// MountSpec is one mount a container asked for, whichever syntax it came
// in (-v, --mount, --tmpfs, the API's Binds/Mounts/Tmpfs). It is what a
// container records at create and what Resolve takes at start.
type MountSpec struct {
	Type MountType `json:"Type"`
	// Source is the volume name (empty: an anonymous volume) or, for a
	// bind, the absolute host path. Empty for tmpfs.
	Source string `json:"Source,omitempty"`
	// Target is the absolute, clean path inside the container.
	Target   string `json:"Target"`
	ReadOnly bool   `json:"ReadOnly,omitempty"`

	// Bind: Propagation is one of Propagations ("" means rprivate).
	// NonRecursive binds without submounts. CreateHostPath creates a
	// missing source directory: -v does, --mount refuses.
	Propagation    string `json:"Propagation,omitempty"`
	NonRecursive   bool   `json:"NonRecursive,omitempty"`
	CreateHostPath bool   `json:"CreateHostPath,omitempty"`

	// Volume: NoCopy skips populating a new volume from the image;
	// Labels and Options are used when the volume gets created.
	NoCopy        bool              `json:"NoCopy,omitempty"`
	VolumeLabels  map[string]string `json:"VolumeLabels,omitempty"`
	VolumeOptions map[string]string `json:"VolumeOptions,omitempty"`

	// Tmpfs: size in bytes (0: the kernel's default, half the RAM), mode
	// of the root (0: 1777), and extra mount flags (noexec, exec, …).
	TmpfsSize  int64    `json:"TmpfsSize,omitempty"`
	TmpfsMode  uint32   `json:"TmpfsMode,omitempty"`
	TmpfsFlags []string `json:"TmpfsFlags,omitempty"`

	// Mode is the -v mode string as given ("ro,z"), for inspect.
	Mode string `json:"Mode,omitempty"`
}

// Propagations are the bind propagation modes Linux has.
var Propagations = []string{"private", "rprivate", "shared", "rshared", "slave", "rslave"}

func invalidf(format string, a ...any) error {
	return fmt.Errorf(format+": %w", append(a, errdefs.ErrInvalidArgument)...)
}

// checkTarget validates a container path: absolute, not "/", no "..".
// The path is cleaned of "//" and "/." only; ".." components are refused
// rather than resolved, since a target that climbs is a mistake or an
// attack.
func checkTarget(kind MountType, target string) (string, error) {
	if target == "" {
		return "", invalidf("invalid mount config for type %q: field Target must not be empty", kind)
	}
	if !strings.HasPrefix(target, "/") {
		return "", invalidf("invalid mount config for type %q: invalid mount path: '%s' mount path must be absolute", kind, target)
	}
	if strings.ContainsRune(target, 0) {
		return "", invalidf("invalid mount config for type %q: mount path %q contains a NUL byte", kind, target)
	}
	if slices.Contains(strings.Split(target, "/"), "..") {
		return "", invalidf("invalid mount config for type %q: mount path '%s' must not contain '..'", kind, target)
	}
	clean := path.Clean(target)
	if clean == "/" {
		return "", invalidf("invalid mount config for type %q: invalid specification: destination can't be '/'", kind)
	}
	return clean, nil
}

func checkHostPath(p string) (string, error) {
	if !strings.HasPrefix(p, "/") {
		return "", invalidf("invalid mount config for type \"bind\": invalid mount path: '%s' bind source must be an absolute path", p)
	}
	if strings.ContainsRune(p, 0) {
		return "", invalidf("invalid mount config for type \"bind\": bind source %q contains a NUL byte", p)
	}
	return path.Clean(p), nil
}

// Validate checks a MountSpec however it was built (the API's Mounts come
// in as structures) and returns it with Target and Source cleaned.
func (m MountSpec) Validate() (MountSpec, error) {
	var err error
	if m.Target, err = checkTarget(m.Type, m.Target); err != nil {
		return m, err
	}
	bindOnly := m.Propagation != "" || m.NonRecursive || m.CreateHostPath
	volOnly := m.NoCopy || len(m.VolumeLabels) > 0 || len(m.VolumeOptions) > 0
	tmpfsOnly := m.TmpfsSize != 0 || m.TmpfsMode != 0 || len(m.TmpfsFlags) > 0
	mix := func(opt string) error {
		return invalidf("invalid mount config for type %q: cannot mix '%s-*' options with mount type '%s'", m.Type, opt, m.Type)
	}
	switch m.Type {
	case TypeVolume:
		if bindOnly {
			return m, mix("bind")
		}
		if tmpfsOnly {
			return m, mix("tmpfs")
		}
		if m.Source != "" {
			if err := ValidateName(m.Source); err != nil {
				return m, fmt.Errorf("invalid mount config for type \"volume\": %w", err)
			}
		}
	case TypeBind:
		if volOnly {
			return m, mix("volume")
		}
		if tmpfsOnly {
			return m, mix("tmpfs")
		}
		if m.Source == "" {
			return m, invalidf("invalid mount config for type \"bind\": field Source must not be empty")
		}
		if m.Source, err = checkHostPath(m.Source); err != nil {
			return m, err
		}
		if m.Propagation != "" && !slices.Contains(Propagations, m.Propagation) {
			return m, invalidf("invalid mount config for type \"bind\": invalid propagation mode %q (want one of %s)", m.Propagation, strings.Join(Propagations, ", "))
		}
	case TypeTmpfs:
		if volOnly {
			return m, mix("volume")
		}
		if bindOnly {
			return m, mix("bind")
		}
		if m.Source != "" {
			return m, invalidf("invalid mount config for type \"tmpfs\": field Source must not be specified")
		}
		if m.TmpfsSize < 0 {
			return m, invalidf("invalid mount config for type \"tmpfs\": invalid size %d", m.TmpfsSize)
		}
		if m.TmpfsMode > 0o7777 {
			return m, invalidf("invalid mount config for type \"tmpfs\": invalid mode %#o", m.TmpfsMode)
		}
		for _, f := range m.TmpfsFlags {
			if k, v, ok := strings.Cut(f, "="); ok {
				if _, err := strconv.ParseUint(v, 10, 32); err == nil && slices.Contains(tmpfsNumeric, k) {
					continue
				}
			} else if slices.Contains(tmpfsFlags, f) {
				continue
			}
			return m, invalidf("invalid mount config for type \"tmpfs\": invalid option %q (want uid=, gid=, nr_inodes=, nr_blocks= or one of %s)", f, strings.Join(tmpfsFlags, ", "))
		}
	default:
		return m, invalidf("invalid mount config: mount type %q is not one of volume, bind, tmpfs", m.Type)
	}
	return m, nil
}

// ParseVolumeSpec parses Docker's -v / --volume (and the API's Binds)
// syntax:
//
//	NAME:/path[:OPTS]   named volume (created if missing)
//	/host:/path[:OPTS]  bind mount; a missing host directory is created
//	/path               anonymous volume
//
// OPTS is a comma list of ro|rw, a propagation mode (bind only), nocopy
// (volume only), and the accepted-but-ignored z, Z, consistent, cached,
// delegated. A relative host path is an invalid volume name: the CLI must
// make "./dir" absolute before it gets here, as Docker's does.
func ParseVolumeSpec(spec string) (MountSpec, error) {
	wrap := func(err error) error {
		return fmt.Errorf("invalid volume specification: '%s': %w", spec, err)
	}
	if spec == "" {
		return MountSpec{}, invalidf("invalid volume specification: empty")
	}
	parts := strings.Split(spec, ":")
	if slices.Contains(parts, "") {
		return MountSpec{}, invalidf("invalid spec: %s: empty section between colons", spec)
	}
	var m MountSpec
	var mode string
	switch len(parts) {
	case 1:
		m = MountSpec{Type: TypeVolume, Target: parts[0]}
	case 2, 3:
		m.Source, m.Target = parts[0], parts[1]
		if len(parts) == 3 {
			mode = parts[2]
		}
		if strings.HasPrefix(m.Source, "/") {
			m.Type = TypeBind
			m.CreateHostPath = true
		} else {
			m.Type = TypeVolume
		}
	default:
		return MountSpec{}, invalidf("invalid volume specification: '%s': want [SOURCE:]TARGET[:MODE]", spec)
	}
	if mode != "" {
		m.Mode = mode
		seenRW, seenProp := false, false
		for _, o := range strings.Split(mode, ",") {
			switch {
			case o == "ro" || o == "rw":
				if seenRW {
					return MountSpec{}, wrap(invalidf("invalid mode %q: ro/rw given twice", mode))
				}
				seenRW = true
				m.ReadOnly = o == "ro"
			case slices.Contains(Propagations, o):
				if m.Type != TypeBind {
					return MountSpec{}, wrap(invalidf("invalid mode %q: propagation applies to bind mounts only", mode))
				}
				if seenProp {
					return MountSpec{}, wrap(invalidf("invalid mode %q: propagation given twice", mode))
				}
				seenProp = true
				m.Propagation = o
			case o == "nocopy":
				if m.Type != TypeVolume {
					return MountSpec{}, wrap(invalidf("invalid mode %q: nocopy applies to volumes only", mode))
				}
				m.NoCopy = true
			case o == "z" || o == "Z" || o == "consistent" || o == "cached" || o == "delegated":
				// SELinux relabelling and macOS consistency: nothing to do here.
			default:
				return MountSpec{}, wrap(invalidf("invalid mode: %s (want ro, rw, nocopy, z, Z or a propagation mode)", o))
			}
		}
	}
	v, err := m.Validate()
	if err != nil {
		return MountSpec{}, wrap(err)
	}
	return v, nil
}

// ParseMountSpec parses Docker's --mount syntax: comma-separated key=value
// fields (CSV quoting allowed), keys type (volume by default), source|src,
// target|destination|dst, readonly|ro[=bool], volume-nocopy[=bool],
// volume-label=K=V, volume-opt=K=V, volume-driver=local,
// bind-propagation=MODE, bind-nonrecursive[=bool], tmpfs-size=SIZE,
// tmpfs-mode=OCTAL, consistency=… (ignored). Unlike -v, a bind whose
// source does not exist is refused when resolved.
func ParseMountSpec(spec string) (MountSpec, error) {
	wrap := func(err error) error {
		return fmt.Errorf("invalid argument %q for --mount: %w", spec, err)
	}
	r := csv.NewReader(strings.NewReader(spec))
	r.FieldsPerRecord = -1
	fields, err := r.Read()
	if err != nil || len(fields) == 0 || strings.ContainsAny(spec, "\n\r") {
		return MountSpec{}, wrap(invalidf("want comma-separated key=value fields"))
	}
	m := MountSpec{Type: TypeVolume}
	seen := map[string]bool{}
	for _, f := range fields {
		key, val, hasVal := strings.Cut(f, "=")
		key = strings.ToLower(strings.TrimSpace(key))
		canon := key
		switch key {
		case "src":
			canon = "source"
		case "dst", "destination":
			canon = "target"
		case "ro":
			canon = "readonly"
		}
		if seen[canon] && canon != "volume-label" && canon != "volume-opt" {
			return MountSpec{}, wrap(invalidf("field %q given twice", key))
		}
		seen[canon] = true
		boolVal := func() (bool, error) {
			if !hasVal {
				return true, nil
			}
			switch strings.ToLower(val) {
			case "1", "true":
				return true, nil
			case "0", "false":
				return false, nil
			}
			return false, invalidf("invalid value for %s: %q (want true or false)", key, val)
		}
		needVal := func() error {
			if !hasVal {
				return invalidf("invalid field '%s' must be a key=value pair", f)
			}
			return nil
		}
		switch canon {
		case "type":
			if err := needVal(); err != nil {
				return MountSpec{}, wrap(err)
			}
			m.Type = MountType(strings.ToLower(val))
		case "source":
			if err := needVal(); err != nil {
				return MountSpec{}, wrap(err)
			}
			m.Source = val
		case "target":
			if err := needVal(); err != nil {
				return MountSpec{}, wrap(err)
			}
			m.Target = val
		case "readonly":
			if m.ReadOnly, err = boolVal(); err != nil {
				return MountSpec{}, wrap(err)
			}
		case "volume-nocopy":
			if m.NoCopy, err = boolVal(); err != nil {
				return MountSpec{}, wrap(err)
			}
		case "bind-nonrecursive":
			if m.NonRecursive, err = boolVal(); err != nil {
				return MountSpec{}, wrap(err)
			}
		case "volume-label", "volume-opt":
			if err := needVal(); err != nil {
				return MountSpec{}, wrap(err)
			}
			k, v, ok := strings.Cut(val, "=")
			if !ok || k == "" {
				return MountSpec{}, wrap(invalidf("invalid value for %s: %q (want KEY=VALUE)", key, val))
			}
			target := &m.VolumeLabels
			if canon == "volume-opt" {
				target = &m.VolumeOptions
			}
			if *target == nil {
				*target = map[string]string{}
			}
			(*target)[k] = v
		case "volume-driver":
			if err := needVal(); err != nil {
				return MountSpec{}, wrap(err)
			}
			if val != DriverLocal {
				return MountSpec{}, wrap(fmt.Errorf("volume driver %q: %w (berth has the \"local\" driver only)", val, errdefs.ErrNotImplemented))
			}
		case "bind-propagation":
			if err := needVal(); err != nil {
				return MountSpec{}, wrap(err)
			}
			m.Propagation = strings.ToLower(val)
			if !slices.Contains(Propagations, m.Propagation) {
				return MountSpec{}, wrap(invalidf("invalid value for bind-propagation: %q (want one of %s)", val, strings.Join(Propagations, ", ")))
			}
		case "tmpfs-size":
			if err := needVal(); err != nil {
				return MountSpec{}, wrap(err)
			}
			n, err := units.RAMInBytes(val)
			if err != nil || n <= 0 {
				return MountSpec{}, wrap(invalidf("invalid value for tmpfs-size: %q (want a positive size such as 64m)", val))
			}
			m.TmpfsSize = n
		case "tmpfs-mode":
			if err := needVal(); err != nil {
				return MountSpec{}, wrap(err)
			}
			n, err := strconv.ParseUint(val, 8, 32)
			if err != nil || n > 0o7777 {
				return MountSpec{}, wrap(invalidf("invalid value for tmpfs-mode: %q (want an octal mode such as 1770)", val))
			}
			m.TmpfsMode = uint32(n)
		case "consistency":
		default:
			if !hasVal {
				return MountSpec{}, wrap(invalidf("invalid field '%s' must be a key=value pair", f))
			}
			return MountSpec{}, wrap(invalidf("unexpected key '%s' in '%s'", key, f))
		}
	}
	v, err := m.Validate()
	if err != nil {
		return MountSpec{}, wrap(err)
	}
	return v, nil
}

// tmpfsNumeric are the tmpfs options that take a number.
var tmpfsNumeric = []string{"uid", "gid", "nr_inodes", "nr_blocks"}

// tmpfsFlags are the value-less tmpfs options --tmpfs accepts.
var tmpfsFlags = []string{"ro", "rw", "exec", "noexec", "suid", "nosuid", "dev", "nodev",
	"sync", "async", "atime", "noatime", "relatime", "strictatime", "nodiratime", "diratime"}

// ParseTmpfs parses one --tmpfs flag ("/path[:opts]") or, with opts given
// separately, one entry of the API's HostConfig.Tmpfs (path → opts). opts
// is a comma list of size=SIZE, mode=OCTAL, uid=N, gid=N, nr_inodes=N and
// the mount flags ro, rw, exec, noexec, suid, nosuid, dev, nodev, ….
func ParseTmpfs(spec string) (MountSpec, error) {
	target, opts, _ := strings.Cut(spec, ":")
	return ParseTmpfsOptions(target, opts)
}

// ParseTmpfsOptions parses a tmpfs mount given as target and options.
func ParseTmpfsOptions(target, opts string) (MountSpec, error) {
	wrap := func(err error) error {
		return fmt.Errorf("invalid tmpfs %q: %w", target, err)
	}
	m := MountSpec{Type: TypeTmpfs, Target: target}
	for _, o := range strings.Split(opts, ",") {
		if o = strings.TrimSpace(o); o == "" {
			continue
		}
		k, v, hasVal := strings.Cut(o, "=")
		if !hasVal {
			switch o {
			case "ro":
				m.ReadOnly = true
			case "rw":
				m.ReadOnly = false
			default:
				if !slices.Contains(tmpfsFlags, o) {
					return MountSpec{}, wrap(invalidf("unknown option %q (want size=, mode=, uid=, gid=, nr_inodes= or one of %s)", o, strings.Join(tmpfsFlags, ", ")))
				}
				if !slices.Contains(m.TmpfsFlags, o) {
					m.TmpfsFlags = append(m.TmpfsFlags, o)
				}
			}
			continue
		}
		switch k {
		case "size":
			n, err := units.RAMInBytes(v)
			if err != nil || n <= 0 {
				return MountSpec{}, wrap(invalidf("invalid size %q (want a positive size such as 64m)", v))
			}
			m.TmpfsSize = n
		case "mode":
			n, err := strconv.ParseUint(v, 8, 32)
			if err != nil || n > 0o7777 {
				return MountSpec{}, wrap(invalidf("invalid mode %q (want an octal mode such as 1777)", v))
			}
			m.TmpfsMode = uint32(n)
		case "uid", "gid", "nr_inodes", "nr_blocks":
			if _, err := strconv.ParseUint(v, 10, 32); err != nil {
				return MountSpec{}, wrap(invalidf("invalid %s %q (want a non-negative number)", k, v))
			}
			m.TmpfsFlags = append(m.TmpfsFlags, k+"="+v)
		default:
			return MountSpec{}, wrap(invalidf("unknown option %q (want size=, mode=, uid=, gid=, nr_inodes= or one of %s)", o, strings.Join(tmpfsFlags, ", ")))
		}
	}
	v, err := m.Validate()
	if err != nil {
		return MountSpec{}, wrap(err)
	}
	return v, nil
}
