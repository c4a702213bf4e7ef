package main

import (
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/berth/berth/internal/cluster/pki"
	"github.com/berth/berth/internal/errdefs"
)

const defaultDataDir = "/var/lib/berth/server"

func printFile(path, what string) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s %s does not exist: start `berth server --data-dir` on this directory first: %w", what, path, errdefs.ErrNotFound)
	}
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(b)
	return err
}

func runKubeconfig(args []string) error {
	fs := flag.NewFlagSet("kubeconfig", flag.ContinueOnError)
	dataDir := fs.String("data-dir", defaultDataDir, "control-plane data directory")
	if err := fs.Parse(args); err != nil {
		return err
	}
	return printFile(pki.Dir{Root: *dataDir}.Path("kubeconfig"), "kubeconfig")
}

func runToken(args []string) error {
	if len(args) > 0 && args[0] == "create" {
		fs := flag.NewFlagSet("token create", flag.ContinueOnError)
		dataDir := fs.String("data-dir", defaultDataDir, "control-plane data directory")
		role := fs.String("role", "", "role of the token: admin, node or viewer (join: joins servers)")
		name := fs.String("name", "", "name of the holder (required for node tokens: the node name)")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if *role == "" {
			return fmt.Errorf("--role is required (admin, node, viewer or join): %w", errdefs.ErrInvalidArgument)
		}
		d := pki.Dir{Root: *dataDir}
		if _, err := os.Stat(d.Path("pki", "ca.crt")); err != nil {
			return fmt.Errorf("data directory %s has no control plane (pki/ca.crt missing): %w", *dataDir, errdefs.ErrNotFound)
		}
		tok, err := d.CreateToken(*role, *name)
		if err != nil {
			return err
		}
		fmt.Println(tok)
		return nil
	}
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	dataDir := fs.String("data-dir", defaultDataDir, "control-plane data directory")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unknown token subcommand %q: want `token` or `token create --role …`: %w", fs.Arg(0), errdefs.ErrInvalidArgument)
	}
	return printFile(pki.Dir{Root: *dataDir}.Path("token"), "token file")
}
