package cli

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/spf13/cobra"
)

func newCommitCmd(g *globals) *cobra.Command {
	var author, message string
	var changes []string
	var pause bool
	cmd := &cobra.Command{
		Use:   "commit [OPTIONS] CONTAINER [REPOSITORY[:TAG]]",
		Short: "Create a new image from a container's changes",
		Example: `  berth commit web web:snapshot
  berth commit -c 'CMD ["nginx", "-g", "daemon off;"]' -m "tuned config" web`,
		Args: func(cmd *cobra.Command, args []string) error { return rangeArgs(cmd, args, 1, 2) },
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			q := url.Values{"container": {args[0]}, "author": {author}, "comment": {message},
				"pause": {fmt.Sprint(pause)}}
			if len(args) == 2 {
				repo, tag := splitRepoTag(args[1])
				q.Set("repo", repo)
				q.Set("tag", tag)
			}
			for _, c := range changes {
				q.Add("changes", c)
			}
			var out struct {
				ID string `json:"Id"`
			}
			if err := cl.JSON(cmd.Context(), http.MethodPost, "/commit", q, nil, &out); err != nil {
				return err
			}
			fmt.Fprintln(g.out, out.ID)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&author, "author", "a", "", `Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")`)
	f.StringArrayVarP(&changes, "change", "c", nil, "Apply Dockerfile instruction to the created image")
	f.StringVarP(&message, "message", "m", "", "Commit message")
	f.BoolVarP(&pause, "pause", "p", true, "Pause container during commit")
	return cmd
}

// splitRepoTag splits REPOSITORY[:TAG]; a colon before the last slash
// belongs to a registry's port.
func splitRepoTag(s string) (repo, tag string) {
	if i := strings.LastIndexByte(s, ':'); i > strings.LastIndexByte(s, '/') {
		return s[:i], s[i+1:]
	}
	return s, ""
}

func newDiffCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "diff CONTAINER",
		Short: "Inspect changes to files or directories on a container's filesystem",
		Long: `Inspect changes to files or directories on a container's filesystem.

Each line is a path the container changed since it was created from its
image: A (added), C (changed: modified, or the directory of a change) or
D (deleted).`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			var changes []struct {
				Path string `json:"Path"`
				Kind int    `json:"Kind"`
			}
			if err := cl.JSON(cmd.Context(), http.MethodGet, "/containers/"+url.PathEscape(args[0])+"/changes", nil, nil, &changes); err != nil {
				return err
			}
			for _, c := range changes {
				k := "C"
				switch c.Kind {
				case 1:
					k = "A"
				case 2:
					k = "D"
				}
				fmt.Fprintf(g.out, "%s %s\n", k, c.Path)
			}
			return nil
		},
	}
}
