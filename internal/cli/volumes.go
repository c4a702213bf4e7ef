package cli

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/spf13/cobra"

	"github.com/berth/berth/internal/engine/api"
	"github.com/berth/berth/internal/units"
)

func newVolumeCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "volume", Short: "Manage volumes"}
	var labels, opts []string
	var driver string
	create := &cobra.Command{
		Use:   "create [OPTIONS] [VOLUME]",
		Short: "Create a volume",
		Args:  func(c *cobra.Command, a []string) error { return rangeArgs(c, a, 0, 1) },
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			req := api.VolumeCreateRequest{Driver: driver, Labels: kvMap(labels), DriverOpts: kvMap(opts)}
			if len(args) == 1 {
				req.Name = args[0]
			}
			var v api.Volume
			if err := cl.JSON(cmd.Context(), http.MethodPost, "/volumes/create", nil, req, &v); err != nil {
				return err
			}
			fmt.Fprintln(g.out, v.Name)
			return nil
		},
	}
	create.Flags().StringArrayVar(&labels, "label", nil, "Set metadata for a volume")
	create.Flags().StringArrayVarP(&opts, "opt", "o", nil, "Set driver specific options")
	create.Flags().StringVarP(&driver, "driver", "d", "local", "Specify volume driver name")

	var quiet bool
	var filters []string
	var format string
	ls := &cobra.Command{
		Use:     "ls [OPTIONS]",
		Aliases: []string{"list"},
		Short:   "List volumes",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			q, err := filterQuery(filters)
			if err != nil {
				return err
			}
			var resp api.VolumeListResponse
			if err := cl.JSON(cmd.Context(), http.MethodGet, "/volumes", q, nil, &resp); err != nil {
				return err
			}
			if quiet {
				for _, v := range resp.Volumes {
					fmt.Fprintln(g.out, v.Name)
				}
				return nil
			}
			if format == "" {
				format = "table {{.Driver}}\t{{.Name}}"
			}
			rows := make([]any, len(resp.Volumes))
			for i, v := range resp.Volumes {
				rows[i] = volumeRow{v}
			}
			return render(g.out, format, rows, map[string]string{"Name": "VOLUME NAME"})
		},
	}
	ls.Flags().BoolVarP(&quiet, "quiet", "q", false, "Only display volume names")
	ls.Flags().StringArrayVarP(&filters, "filter", "f", nil, "Provide filter values (e.g. 'dangling=true', 'label=k=v', 'name=x')")
	ls.Flags().StringVar(&format, "format", "", "Format output using a Go template")

	var iformat string
	inspect := &cobra.Command{
		Use:   "inspect [OPTIONS] VOLUME [VOLUME...]",
		Short: "Display detailed information on one or more volumes",
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			return inspectRaw(cmd, g, cl, args, iformat, func(n string) string { return "/volumes/" + url.PathEscape(n) })
		},
	}
	inspect.Flags().StringVarP(&iformat, "format", "f", "", "Format output using a Go template")

	var force bool
	rm := &cobra.Command{
		Use:     "rm [OPTIONS] VOLUME [VOLUME...]",
		Aliases: []string{"remove"},
		Short:   "Remove one or more volumes",
		Args:    minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			q := url.Values{}
			if force {
				q.Set("force", "1")
			}
			return forEach(g, args, func(n string) error {
				if err := cl.JSON(cmd.Context(), http.MethodDelete, "/volumes/"+url.PathEscape(n), q, nil, nil); err != nil {
					return err
				}
				fmt.Fprintln(g.out, n)
				return nil
			})
		},
	}
	rm.Flags().BoolVarP(&force, "force", "f", false, "Do not error when a volume does not exist")

	var pforce, pall bool
	var pfilters []string
	prune := &cobra.Command{
		Use:   "prune [OPTIONS]",
		Short: "Remove unused volumes (anonymous ones; all unused with -a)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			what := "all anonymous local volumes not used by at least one container"
			if pall {
				what = "all local volumes not used by at least one container"
			}
			if !pforce && !confirm(g, "WARNING! This will remove "+what+".\nAre you sure you want to continue? [y/N] ") {
				return nil
			}
			cl, err := g.client()
			if err != nil {
				return err
			}
			fs := pfilters
			if pall {
				fs = append(fs, "all=true")
			}
			q, err := filterQuery(fs)
			if err != nil {
				return err
			}
			var rep api.VolumePruneReport
			if err := cl.JSON(cmd.Context(), http.MethodPost, "/volumes/prune", q, nil, &rep); err != nil {
				return err
			}
			if len(rep.VolumesDeleted) > 0 {
				fmt.Fprintln(g.out, "Deleted Volumes:")
				for _, n := range rep.VolumesDeleted {
					fmt.Fprintln(g.out, n)
				}
				fmt.Fprintln(g.out)
			}
			fmt.Fprintf(g.out, "Total reclaimed space: %s\n", units.HumanSize(int64(rep.SpaceReclaimed)))
			return nil
		},
	}
	prune.Flags().BoolVarP(&pforce, "force", "f", false, "Do not prompt for confirmation")
	prune.Flags().BoolVarP(&pall, "all", "a", false, "Remove all unused volumes, not just anonymous ones")
	prune.Flags().StringArrayVar(&pfilters, "filter", nil, "Provide filter values (e.g. 'label=<label>')")
	cmd.AddCommand(create, ls, inspect, rm, prune)
	return cmd
}

type volumeRow struct{ v api.Volume }

func (r volumeRow) Name() string       { return r.v.Name }
func (r volumeRow) Driver() string     { return r.v.Driver }
func (r volumeRow) Mountpoint() string { return r.v.Mountpoint }
func (r volumeRow) Scope() string      { return r.v.Scope }
func (r volumeRow) Label(k string) string {
	return r.v.Labels[k]
}
func (r volumeRow) Labels() string {
	var ls []string
	for k, v := range r.v.Labels {
		ls = append(ls, k+"="+v)
	}
	return strings.Join(ls, ",")
}
func (r volumeRow) JSON() any { return r.v }

func kvMap(kvs []string) map[string]string {
	if len(kvs) == 0 {
		return nil
	}
	m := map[string]string{}
	for _, kv := range kvs {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return m
}
