package monitor

import (
	"errors"
	"strconv"
	"strings"

	"github.com/berth/berth/internal/engine/logs"
)

// config is the shim's command line.
type config struct {
	id, bundle, runtime, runtimeRoot string
	logPath                          string
	logMaxSize                       int64
	logMaxFiles                      int
	tty, stdin, stdinOnce            bool
	execID, processFile              string
}

func parseFlags(args []string) (config, error) {
	c := config{logMaxSize: logs.DefaultMaxSize, logMaxFiles: logs.DefaultMaxFiles}
	for i := 0; i < len(args); i++ {
		name := strings.TrimLeft(args[i], "-")
		if name == args[i] {
			return c, errors.New("unexpected argument " + strconv.Quote(args[i]))
		}
		val, hasVal := "", false
		if k, v, ok := strings.Cut(name, "="); ok {
			name, val, hasVal = k, v, true
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
				return c, errors.New("flag --" + name + " needs a value")
			}
			i++
			val = args[i]
		}
		var err error
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
		case "log-max-size":
			c.logMaxSize, err = strconv.ParseInt(val, 10, 64)
		case "log-max-files":
			c.logMaxFiles, err = strconv.Atoi(val)
		case "exec-id":
			c.execID = val
		case "process":
			c.processFile = val
		default:
			return c, errors.New("unknown flag --" + name)
		}
		if err != nil {
			return c, errors.New("flag --" + name + ": " + strconv.Quote(val) + " is not a number")
		}
	}
	switch {
	case c.id == "" || c.bundle == "" || c.runtime == "" || c.runtimeRoot == "":
		return c, errors.New("--id, --bundle, --runtime and --runtime-root are required")
	case (c.execID == "") != (c.processFile == ""):
		return c, errors.New("--exec-id and --process go together")
	}
	return c, nil
}
