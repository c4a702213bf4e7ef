package monitor

import "github.com/berth/berth/internal/engine/logs/crilog"

// config is the shim's command line.
type config struct {
	id, bundle, runtime, runtimeRoot string
	logPath                          string
	cgroupsPath                      string
	logMaxSize                       int64
	logMaxFiles                      int
	tty, stdin, stdinOnce            bool
	execID, processFile              string
}

func parseFlags(args []string) (config, error) {
	c := config{logMaxSize: crilog.DefaultMaxSize, logMaxFiles: crilog.DefaultMaxFiles}
	for i := 0; i < len(args); i++ {
		name := args[i]
		for len(name) > 0 && name[0] == '-' {
			name = name[1:]
		}
		if name == args[i] {
			return c, errString("unexpected argument " + quote(args[i]))
		}
		val, hasVal := "", false
		for j := 0; j < len(name); j++ {
			if name[j] == '=' {
				name, val, hasVal = name[:j], name[j+1:], true
				break
			}
		}
		switch name {
		case "tty", "stdin", "stdin-once":
			b := !hasVal || val == "true"
			switch name {
			case "tty":
				c.tty = b
			case "stdin":
				c.stdin = b
			default:
				c.stdinOnce = b
			}
			continue
		}
		if !hasVal {
			if i+1 >= len(args) {
				return c, errString("flag --" + name + " needs a value")
			}
			i++
			val = args[i]
		}
		ok := true
		switch name {
		case "id":
			c.id = val
		case "bundle":
			c.bundle = val
		case "runtime":
			c.runtime = val
		case "runtime-root":
			c.runtimeRoot = val
		case "log":
			c.logPath = val
		case "cgroup":
			c.cgroupsPath = val
		case "log-max-size":
			var n uint64
			n, ok = parseUint(val)
			c.logMaxSize = int64(n)
		case "log-max-files":
			var n uint64
			n, ok = parseUint(val)
			ok = ok && n < 1<<20
			c.logMaxFiles = int(n)
		case "exec-id":
			c.execID = val
		case "process":
			c.processFile = val
		default:
			return c, errString("unknown flag --" + name)
		}
		if !ok {
			return c, errString("flag --" + name + ": " + quote(val) + " is not a number")
		}
	}
	switch {
	case c.id == "" || c.bundle == "" || c.runtime == "" || c.runtimeRoot == "":
		return c, errString("--id, --bundle, --runtime and --runtime-root are required")
	case (c.execID == "") != (c.processFile == ""):
		return c, errString("--exec-id and --process go together")
	}
	return c, nil
}
