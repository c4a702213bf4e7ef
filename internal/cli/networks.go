package cli

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/spf13/cobra"

	"github.com/berth/berth/internal/engine/api"
)

func newNetworkCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "network", Short: "Manage networks"}

	var subnet, gateway, driver string
	var internal bool
	var labels []string
	create := &cobra.Command{
		Use:   "create [OPTIONS] NETWORK",
		Short: "Create a network",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			req := api.NetworkCreateRequest{Name: args[0], Driver: driver, Internal: internal, Labels: kvMap(labels)}
			if subnet != "" || gateway != "" {
				req.IPAM = &api.IPAM{Config: []api.IPAMConfig{{Subnet: subnet, Gateway: gateway}}}
			}
			var resp api.NetworkCreateResponse
			if err := cl.JSON(cmd.Context(), http.MethodPost, "/networks/create", nil, req, &resp); err != nil {
				return err
			}
			fmt.Fprintln(g.out, resp.ID)
			return nil
		},
	}
	create.Flags().StringVar(&subnet, "subnet", "", "Subnet in CIDR format (default: a free one)")
	create.Flags().StringVar(&gateway, "gateway", "", "IPv4 gateway for the subnet (default: its first address)")
	create.Flags().BoolVar(&internal, "internal", false, "Restrict external access to the network")
	create.Flags().StringVarP(&driver, "driver", "d", "bridge", "Driver to manage the network")
	create.Flags().StringArrayVar(&labels, "label", nil, "Set metadata on a network")

	var quiet, noTrunc bool
	var filters []string
	var format string
	ls := &cobra.Command{
		Use:     "ls [OPTIONS]",
		Aliases: []string{"list"},
		Short:   "List networks",
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
			var nets []api.Network
			if err := cl.JSON(cmd.Context(), http.MethodGet, "/networks", q, nil, &nets); err != nil {
				return err
			}
			rows := make([]any, len(nets))
			for i, n := range nets {
				rows[i] = networkRow{n: n, trunc: !noTrunc}
			}
			if quiet {
				for _, r := range rows {
					fmt.Fprintln(g.out, r.(networkRow).ID())
				}
				return nil
			}
			if format == "" {
				format = "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}"
			}
			return render(g.out, format, rows, map[string]string{"ID": "NETWORK ID"})
		},
	}
	ls.Flags().BoolVarP(&quiet, "quiet", "q", false, "Only display network IDs")
	ls.Flags().BoolVar(&noTrunc, "no-trunc", false, "Do not truncate the output")
	ls.Flags().StringArrayVarP(&filters, "filter", "f", nil, "Provide filter values (e.g. 'driver=bridge', 'name=x', 'label=k=v')")
	ls.Flags().StringVar(&format, "format", "", "Format output using a Go template")

	var iformat string
	inspect := &cobra.Command{
		Use:   "inspect [OPTIONS] NETWORK [NETWORK...]",
		Short: "Display detailed information on one or more networks",
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			return inspectRaw(cmd, g, cl, args, iformat, func(n string) string { return "/networks/" + url.PathEscape(n) })
		},
	}
	inspect.Flags().StringVarP(&iformat, "format", "f", "", "Format output using a Go template")

	rm := &cobra.Command{
		Use:     "rm NETWORK [NETWORK...]",
		Aliases: []string{"remove"},
		Short:   "Remove one or more networks",
		Args:    minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			return forEach(g, args, func(n string) error {
				if err := cl.JSON(cmd.Context(), http.MethodDelete, "/networks/"+url.PathEscape(n), nil, nil, nil); err != nil {
					return err
				}
				fmt.Fprintln(g.out, n)
				return nil
			})
		},
	}

	var ip string
	var aliases []string
	connect := &cobra.Command{
		Use:   "connect [OPTIONS] NETWORK CONTAINER",
		Short: "Connect a container to a network",
		Args:  exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			req := api.NetworkConnectRequest{Container: args[1], EndpointConfig: &api.EndpointConfigRequest{Aliases: aliases}}
			if ip != "" {
				req.EndpointConfig.IPAMConfig = &api.EndpointIPAMConfig{IPv4Address: ip}
			}
			return cl.JSON(cmd.Context(), http.MethodPost, "/networks/"+url.PathEscape(args[0])+"/connect", nil, req, nil)
		},
	}
	connect.Flags().StringVar(&ip, "ip", "", "IPv4 address (e.g., 172.30.0.10)")
	connect.Flags().StringArrayVar(&aliases, "alias", nil, "Add network-scoped alias for the container")

	var force bool
	disconnect := &cobra.Command{
		Use:   "disconnect [OPTIONS] NETWORK CONTAINER",
		Short: "Disconnect a container from a network",
		Args:  exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			return cl.JSON(cmd.Context(), http.MethodPost, "/networks/"+url.PathEscape(args[0])+"/disconnect", nil,
				api.NetworkDisconnectRequest{Container: args[1], Force: force}, nil)
		},
	}
	disconnect.Flags().BoolVarP(&force, "force", "f", false, "Force the container to disconnect from a network")

	var pforce bool
	prune := &cobra.Command{
		Use:   "prune [OPTIONS]",
		Short: "Remove all unused networks",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if !pforce && !confirm(g, "WARNING! This will remove all custom networks not used by at least one container.\nAre you sure you want to continue? [y/N] ") {
				return nil
			}
			cl, err := g.client()
			if err != nil {
				return err
			}
			var rep api.NetworkPruneReport
			if err := cl.JSON(cmd.Context(), http.MethodPost, "/networks/prune", nil, nil, &rep); err != nil {
				return err
			}
			if len(rep.NetworksDeleted) > 0 {
				fmt.Fprintln(g.out, "Deleted Networks:")
				for _, n := range rep.NetworksDeleted {
					fmt.Fprintln(g.out, n)
				}
			}
			return nil
		},
	}
	prune.Flags().BoolVarP(&pforce, "force", "f", false, "Do not prompt for confirmation")
	cmd.AddCommand(create, ls, inspect, rm, connect, disconnect, prune)
	return cmd
}

type networkRow struct {
	n     api.Network
	trunc bool
}

func (r networkRow) ID() string {
	if r.trunc && len(r.n.ID) > 12 {
		return r.n.ID[:12]
	}
	return r.n.ID
}
func (r networkRow) Name() string   { return r.n.Name }
func (r networkRow) Driver() string { return r.n.Driver }
func (r networkRow) Scope() string  { return r.n.Scope }
func (r networkRow) Internal() bool { return r.n.Internal }
func (r networkRow) Label(k string) string {
	return r.n.Labels[k]
}
func (r networkRow) Labels() string {
	var ls []string
	for k, v := range r.n.Labels {
		ls = append(ls, k+"="+v)
	}
	return strings.Join(ls, ",")
}
func (r networkRow) JSON() any { return r.n }
