// Command berth is the berth CLI and engine daemon.
package main

import (
	"os"

	"github.com/berth/berth/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:]))
}
