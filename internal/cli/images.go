package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/berth/berth/internal/engine/api"
	"github.com/berth/berth/internal/engine/client"
	"github.com/berth/berth/internal/units"
)

func imageCommands(g *globals) []*cobra.Command {
	cmds := []*cobra.Command{newImagesCmd(g), newLoadCmd(g), newSaveCmd(g), newImportCmd(g), newRmiCmd(g), newTagCmd(g), newHistoryCmd(g), newBuildCmd(g), newBuilderCmd(g)}
	group := &cobra.Command{Use: "image", Short: "Manage images"}
	ls := newImagesCmd(g)
	ls.Use, ls.Aliases = "ls [OPTIONS] [REPOSITORY[:TAG]]", []string{"list"}
	rm := newRmiCmd(g)
	rm.Use, rm.Aliases = "rm [OPTIONS] IMAGE [IMAGE...]", []string{"remove"}
	inspect := newInspectCmd(g)
	inspect.Short = "Display detailed information on one or more images"
	inspect.Flags().Set("type", "image")
	group.AddCommand(ls, rm, inspect, newLoadCmd(g), newSaveCmd(g), newImportCmd(g), newTagCmd(g), newHistoryCmd(g), newImagePruneCmd(g), newBuildCmd(g))
	return append(cmds, group)
}

func newImagesCmd(g *globals) *cobra.Command {
	var all, quiet, noTrunc, digests bool
	var filters []string
	var format string
	cmd := &cobra.Command{
		Use:   "images [OPTIONS] [REPOSITORY[:TAG]]",
		Short: "List images",
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			if len(args) == 1 {
				filters = append(filters, "reference="+args[0])
			}
			q, err := filterQuery(filters)
			if err != nil {
				return err
			}
			var list []api.ImageSummary
			if err := cl.JSON(cmd.Context(), http.MethodGet, "/images/json", q, nil, &list); err != nil {
				return err
			}
			var rows []any
			for _, img := range list {
				tags := img.RepoTags
				if len(tags) == 0 && len(img.RepoDigests) > 0 {
					// Pulled by digest only: Docker shows the repository.
					repo, _, _ := strings.Cut(img.RepoDigests[0], "@")
					tags = []string{repo + ":<none>"}
				}
				if len(tags) == 0 {
					tags = []string{"<none>:<none>"}
				}
				for _, t := range tags {
					rows = append(rows, imageRow{img: img, tag: t, trunc: !noTrunc})
				}
			}
			if quiet {
				seen := map[string]bool{}
				for _, r := range rows {
					id := r.(imageRow).ID()
					if !seen[id] {
						fmt.Fprintln(g.out, id)
						seen[id] = true
					}
				}
				return nil
			}
			if format == "" {
				format = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
				if digests {
					format = "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
				}
			}
			return render(g.out, format, rows, map[string]string{"ID": "IMAGE ID", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT"})
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&all, "all", "a", false, "Show all images")
	f.BoolVarP(&quiet, "quiet", "q", false, "Only show image IDs")
	f.BoolVar(&noTrunc, "no-trunc", false, "Don't truncate output")
	f.BoolVar(&digests, "digests", false, "Show digests")
	f.StringArrayVarP(&filters, "filter", "f", nil, "Filter output based on conditions provided (dangling, label, reference)")
	f.StringVar(&format, "format", "", "Format output using a Go template")
	return cmd
}

type imageRow struct {
	img   api.ImageSummary
	tag   string
	trunc bool
}

func (r imageRow) Repository() string {
	if i := strings.LastIndex(r.tag, ":"); i > strings.LastIndex(r.tag, "/") {
		return r.tag[:i]
	}
	return r.tag
}
func (r imageRow) Tag() string {
	if i := strings.LastIndex(r.tag, ":"); i > strings.LastIndex(r.tag, "/") {
		return r.tag[i+1:]
	}
	return "<none>"
}
func (r imageRow) ID() string {
	id := r.img.ID
	if r.trunc {
		id = strings.TrimPrefix(id, "sha256:")
		if len(id) > 12 {
			id = id[:12]
		}
	}
	return id
}
func (r imageRow) Digest() string {
	if len(r.img.RepoDigests) > 0 {
		_, d, _ := strings.Cut(r.img.RepoDigests[0], "@")
		return d
	}
	return "<none>"
}
func (r imageRow) CreatedSince() string {
	if r.img.Created == 0 {
		return "N/A"
	}
	return units.HumanDuration(time.Since(time.Unix(r.img.Created, 0))) + " ago"
}
func (r imageRow) CreatedAt() string { return time.Unix(r.img.Created, 0).String() }
func (r imageRow) Size() string      { return units.HumanSize(r.img.Size) }
func (r imageRow) Containers() int64 { return r.img.Containers }
func (r imageRow) JSON() any         { return r.img }

func newLoadCmd(g *globals) *cobra.Command {
	var input string
	var quiet bool
	cmd := &cobra.Command{
		Use:   "load [OPTIONS]",
		Short: "Load an image from a tar archive (docker save or OCI layout) or STDIN",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			var r io.Reader = g.in
			if input != "" {
				f, err := os.Open(input)
				if err != nil {
					return fmt.Errorf("open %s: %v (give an image archive made by `save`)", input, errors.Unwrap(err))
				}
				defer f.Close()
				r = f
			} else if f, ok := g.in.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
				return &flagError{cmd: "load", err: errors.New("requested load from stdin, but stdin is empty (use -i FILE or pipe an archive in)")}
			}
			q := url.Values{}
			if quiet {
				q.Set("quiet", "1")
			}
			resp, err := cl.Do(cmd.Context(), http.MethodPost, "/images/load", q, r, "application/x-tar")
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			return printJSONStream(g, resp.Body, input)
		},
	}
	cmd.Flags().StringVarP(&input, "input", "i", "", "Read from tar archive file, instead of STDIN")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "Suppress the load output")
	return cmd
}

// printJSONStream prints a progress stream and returns its error, if any.
func printJSONStream(g *globals, r io.Reader, what string) error {
	dec := json.NewDecoder(r)
	for {
		var m api.JSONMessage
		if err := dec.Decode(&m); err != nil {
			if err == io.EOF {
				return nil
			}
			return fmt.Errorf("reading the daemon's progress stream: %v", err)
		}
		if m.Error != "" {
			if what != "" {
				return fmt.Errorf("%s: %s", what, m.Error)
			}
			return errors.New(m.Error)
		}
		if m.Stream != "" {
			fmt.Fprint(g.out, m.Stream)
		} else if m.Status != "" {
			fmt.Fprintln(g.out, m.Status)
		}
	}
}

func newSaveCmd(g *globals) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "save [OPTIONS] IMAGE [IMAGE...]",
		Short: "Save one or more images to a tar archive (loadable by docker load and podman load)",
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			if output == "" {
				if f, ok := g.out.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
					return &flagError{cmd: "save", err: errors.New("cowardly refusing to save to a terminal. Use the -o flag or redirect")}
				}
			}
			resp, err := cl.Do(cmd.Context(), http.MethodGet, "/images/get", url.Values{"names": args}, nil, "")
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			if output == "" {
				_, err := io.Copy(g.out, resp.Body)
				return err
			}
			// Write beside the target and rename, so a failed save never
			// leaves a truncated archive under the requested name.
			tmp, err := os.CreateTemp(filepath.Dir(output), "."+filepath.Base(output)+".*")
			if err != nil {
				return fmt.Errorf("save to %s: %v", output, err)
			}
			defer os.Remove(tmp.Name())
			if _, err := io.Copy(tmp, resp.Body); err != nil {
				tmp.Close()
				return fmt.Errorf("save to %s: %v", output, err)
			}
			if err := tmp.Close(); err != nil {
				return err
			}
			return os.Rename(tmp.Name(), output)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "Write to a file, instead of STDOUT")
	return cmd
}

func newImportCmd(g *globals) *cobra.Command {
	var changes []string
	var message string
	cmd := &cobra.Command{
		Use:   "import [OPTIONS] file|- [REPOSITORY[:TAG]]",
		Short: "Import the contents from a tarball to create a filesystem image",
		Args:  func(c *cobra.Command, a []string) error { return rangeArgs(c, a, 1, 2) },
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			var r io.Reader = g.in
			if args[0] != "-" {
				f, err := os.Open(args[0])
				if err != nil {
					return fmt.Errorf("open %s: %v (give a root filesystem tarball)", args[0], errors.Unwrap(err))
				}
				defer f.Close()
				r = f
			}
			q := url.Values{"fromSrc": {"-"}, "changes": changes}
			if message != "" {
				q.Set("message", message)
			}
			if len(args) == 2 {
				q.Set("repo", args[1])
			}
			resp, err := cl.Do(cmd.Context(), http.MethodPost, "/images/create", q, r, "application/x-tar")
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			return printJSONStream(g, resp.Body, args[0])
		},
	}
	cmd.Flags().StringArrayVarP(&changes, "change", "c", nil, "Apply Dockerfile instruction to the created image (CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL, STOPSIGNAL)")
	cmd.Flags().StringVarP(&message, "message", "m", "", "Set commit message for imported image")
	return cmd
}

func rangeArgs(cmd *cobra.Command, args []string, min, max int) error {
	if len(args) < min || len(args) > max {
		return &flagError{cmd: subcommand(cmd), err: fmt.Errorf("%q requires at least %d and at most %d arguments\nUsage: %s", cmd.CommandPath(), min, max, cmd.UseLine())}
	}
	return nil
}

func newRmiCmd(g *globals) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "rmi [OPTIONS] IMAGE [IMAGE...]",
		Short: "Remove one or more images",
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			q := url.Values{}
			if force {
				q.Set("force", "1")
			}
			return forEach(g, args, func(name string) error {
				var res []api.ImageDeleteItem
				if err := cl.JSON(cmd.Context(), http.MethodDelete, "/images/"+name, q, nil, &res); err != nil {
					return err
				}
				for _, r := range res {
					if r.Untagged != "" {
						fmt.Fprintln(g.out, "Untagged:", r.Untagged)
					}
					if r.Deleted != "" {
						fmt.Fprintln(g.out, "Deleted:", r.Deleted)
					}
				}
				return nil
			})
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "Force removal of the image")
	return cmd
}

func newTagCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "tag SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]",
		Short: "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE",
		Args:  exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			repo, tag := args[1], ""
			if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
				repo, tag = repo[:i], repo[i+1:]
			}
			return cl.JSON(cmd.Context(), http.MethodPost, "/images/"+args[0]+"/tag", url.Values{"repo": {repo}, "tag": {tag}}, nil, nil)
		},
	}
}

func newHistoryCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "history IMAGE",
		Short: "Show the history of an image",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			var hs []api.HistoryItem
			if err := cl.JSON(cmd.Context(), http.MethodGet, "/images/"+args[0]+"/history", nil, nil, &hs); err != nil {
				return err
			}
			rows := make([]any, len(hs))
			for i, h := range hs {
				rows[i] = historyRow{h}
			}
			return render(g.out, "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}", rows, map[string]string{"ID": "IMAGE", "CreatedSince": "CREATED", "CreatedBy": "CREATED BY"})
		},
	}
}

type historyRow struct{ h api.HistoryItem }

func (r historyRow) ID() string {
	if r.h.ID == "<missing>" {
		return "<missing>"
	}
	id := strings.TrimPrefix(r.h.ID, "sha256:")
	if len(id) > 12 {
		id = id[:12]
	}
	return id
}
func (r historyRow) CreatedSince() string {
	if r.h.Created == 0 {
		return "N/A"
	}
	return units.HumanDuration(time.Since(time.Unix(r.h.Created, 0))) + " ago"
}
func (r historyRow) CreatedBy() string {
	if len(r.h.CreatedBy) > 45 {
		return r.h.CreatedBy[:44] + "…"
	}
	return r.h.CreatedBy
}
func (r historyRow) Size() string    { return units.HumanSize(r.h.Size) }
func (r historyRow) Comment() string { return r.h.Comment }
func (r historyRow) JSON() any       { return r.h }

func newImagePruneCmd(g *globals) *cobra.Command {
	var force, all bool
	cmd := &cobra.Command{
		Use:   "prune [OPTIONS]",
		Short: "Remove unused images",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			msg := "WARNING! This will remove all dangling images.\nAre you sure you want to continue? [y/N] "
			if all {
				msg = "WARNING! This will remove all images without at least one container associated to them.\nAre you sure you want to continue? [y/N] "
			}
			if !force && !confirm(g, msg) {
				return nil
			}
			cl, err := g.client()
			if err != nil {
				return err
			}
			rep, err := pruneImages(cmd.Context(), cl, all)
			if err != nil {
				return err
			}
			printImagePrune(g, rep)
			return nil
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "Do not prompt for confirmation")
	cmd.Flags().BoolVarP(&all, "all", "a", false, "Remove all unused images, not just dangling ones")
	return cmd
}

func pruneImages(ctx context.Context, cl *client.Client, all bool) (api.PruneReport, error) {
	q := url.Values{}
	if all {
		q.Set("filters", `{"dangling":{"false":true}}`)
	}
	var rep api.PruneReport
	err := cl.JSON(ctx, http.MethodPost, "/images/prune", q, nil, &rep)
	return rep, err
}

func printImagePrune(g *globals, rep api.PruneReport) {
	if len(rep.ImagesDeleted) > 0 {
		fmt.Fprintln(g.out, "Deleted Images:")
		for _, d := range rep.ImagesDeleted {
			if d.Untagged != "" {
				fmt.Fprintln(g.out, "untagged:", d.Untagged)
			}
			if d.Deleted != "" {
				fmt.Fprintln(g.out, "deleted:", d.Deleted)
			}
		}
		fmt.Fprintln(g.out)
	}
	fmt.Fprintf(g.out, "Total reclaimed space: %s\n", units.HumanSize(int64(rep.SpaceReclaimed)))
}
