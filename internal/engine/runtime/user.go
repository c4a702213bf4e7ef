package runtime

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"

	"github.com/berth/berth/internal/errdefs"
)

// ResolveUser resolves a Docker --user value ("name", "uid", "uid:gid",
// "name:group", "uid:group", "name:gid" or "") against the container's
// /etc/passwd and /etc/group, read without leaving rootfs. With no group the
// user's primary group is used, and the supplementary groups are those
// listing the user in /etc/group.
func ResolveUser(rootfs, user string) (uid, gid uint32, additionalGids []uint32, err error) {
	userPart, groupPart, hasGroup := strings.Cut(user, ":")
	if userPart == "" {
		if hasGroup {
			return 0, 0, nil, fmt.Errorf("user %q: %w: want name, uid, uid:gid or name:group", user, errdefs.ErrInvalidArgument)
		}
		userPart = "0"
	}
	passwd, err := readDB(rootfs, "/etc/passwd")
	if err != nil {
		return 0, 0, nil, err
	}
	var name string
	if n, perr := strconv.ParseUint(userPart, 10, 32); perr == nil {
		uid = uint32(n)
		// A numeric uid need not exist; use its entry when it does.
		for _, e := range passwd {
			if len(e) >= 4 && e[2] == userPart {
				name = e[0]
				g, _ := strconv.ParseUint(e[3], 10, 32)
				gid = uint32(g)
				break
			}
		}
	} else {
		found := false
		for _, e := range passwd {
			if len(e) >= 4 && e[0] == userPart {
				u, err1 := strconv.ParseUint(e[2], 10, 32)
				g, err2 := strconv.ParseUint(e[3], 10, 32)
				if err1 != nil || err2 != nil {
					return 0, 0, nil, fmt.Errorf("user %q: /etc/passwd entry is malformed: %w", userPart, errdefs.ErrInvalidArgument)
				}
				uid, gid, name, found = uint32(u), uint32(g), userPart, true
				break
			}
		}
		if !found {
			return 0, 0, nil, fmt.Errorf("user %q: %w: no such user in the container's /etc/passwd", userPart, errdefs.ErrInvalidArgument)
		}
	}
	group, err := readDB(rootfs, "/etc/group")
	if err != nil {
		return 0, 0, nil, err
	}
	if hasGroup {
		if groupPart == "" {
			return 0, 0, nil, fmt.Errorf("user %q: %w: group after ':' is empty", user, errdefs.ErrInvalidArgument)
		}
		if n, perr := strconv.ParseUint(groupPart, 10, 32); perr == nil {
			gid = uint32(n)
		} else {
			found := false
			for _, e := range group {
				if len(e) >= 3 && e[0] == groupPart {
					g, err := strconv.ParseUint(e[2], 10, 32)
					if err != nil {
						return 0, 0, nil, fmt.Errorf("group %q: /etc/group entry is malformed: %w", groupPart, errdefs.ErrInvalidArgument)
					}
					gid, found = uint32(g), true
					break
				}
			}
			if !found {
				return 0, 0, nil, fmt.Errorf("group %q: %w: no such group in the container's /etc/group", groupPart, errdefs.ErrInvalidArgument)
			}
		}
		// Docker: an explicit group gives no supplementary groups.
		return uid, gid, nil, nil
	}
	if name != "" {
		for _, e := range group {
			if len(e) < 4 {
				continue
			}
			for _, m := range strings.Split(e[3], ",") {
				if m == name {
					if g, err := strconv.ParseUint(e[2], 10, 32); err == nil && uint32(g) != gid {
						additionalGids = append(additionalGids, uint32(g))
					}
				}
			}
		}
	}
	return uid, gid, additionalGids, nil
}

// readDB reads a colon-separated database (passwd, group) inside rootfs. A
// missing file is empty.
func readDB(rootfs, name string) ([][]string, error) {
	f, err := openInRoot(rootfs, name, os.O_RDONLY)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("read container %s: %w", name, err)
	}
	defer f.Close()
	var out [][]string
	sc := bufio.NewScanner(io.LimitReader(f, 16<<20))
	sc.Buffer(make([]byte, 4096), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		out = append(out, strings.Split(line, ":"))
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read container %s: %w", name, err)
	}
	return out, nil
}

// LookPath checks that argv0 names an executable inside rootfs, searching
// pathEnv (the container's PATH) when argv0 has no slash and resolving a
// relative path against cwd. Symlinks resolve inside rootfs only. It returns
// an error wrapping errdefs.ErrCommandNotFound (exit 127) or
// errdefs.ErrCommandNotExecutable (exit 126).
func LookPath(rootfs, cwd, pathEnv, argv0 string) error {
	if argv0 == "" {
		return fmt.Errorf("command \"\": %w", errdefs.ErrCommandNotFound)
	}
	check := func(p string) error {
		fi, err := statInRoot(rootfs, p)
		if err != nil {
			return fmt.Errorf("%q: %w", argv0, errdefs.ErrCommandNotFound)
		}
		if fi.IsDir() {
			return fmt.Errorf("%q is a directory: %w", argv0, errdefs.ErrCommandNotExecutable)
		}
		if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			return fmt.Errorf("%q: %w", argv0, errdefs.ErrCommandNotExecutable)
		}
		return nil
	}
	if strings.Contains(argv0, "/") {
		p := argv0
		if !path.IsAbs(p) {
			if cwd == "" {
				cwd = "/"
			}
			p = path.Join(cwd, p)
		}
		return check(p)
	}
	if pathEnv == "" {
		pathEnv = DefaultPath
	}
	var firstErr error
	for _, dir := range strings.Split(pathEnv, ":") {
		if dir == "" {
			dir = "."
		}
		if !path.IsAbs(dir) {
			dir = path.Join(cwd, dir)
		}
		err := check(path.Join(dir, argv0))
		if err == nil {
			return nil
		}
		if firstErr == nil && errors.Is(err, errdefs.ErrCommandNotExecutable) {
			firstErr = err
		}
	}
	if firstErr != nil {
		return firstErr
	}
	return fmt.Errorf("%q: %w in $PATH", argv0, errdefs.ErrCommandNotFound)
}

// ResolveGroups resolves Docker's --group-add values (a gid, or a group
// name from the container's /etc/group) to gids.
func ResolveGroups(rootfs string, groups []string) ([]uint32, error) {
	var db [][]string
	out := make([]uint32, 0, len(groups))
	for _, g := range groups {
		if n, err := strconv.ParseUint(g, 10, 32); err == nil {
			out = append(out, uint32(n))
			continue
		}
		if db == nil {
			var err error
			if db, err = readDB(rootfs, "/etc/group"); err != nil {
				return nil, err
			}
		}
		found := false
		for _, e := range db {
			if len(e) >= 3 && e[0] == g {
				n, err := strconv.ParseUint(e[2], 10, 32)
				if err != nil {
					return nil, fmt.Errorf("group %q: /etc/group entry is malformed: %w", g, errdefs.ErrInvalidArgument)
				}
				out, found = append(out, uint32(n)), true
				break
			}
		}
		if !found {
			return nil, fmt.Errorf("GroupAdd %q: %w: no such group in the container's /etc/group (give a numeric gid)", g, errdefs.ErrInvalidArgument)
		}
	}
	return out, nil
}
