package metrics

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/zrepl-ha/zrepl-ha/failover"
	"github.com/zrepl-ha/zrepl-ha/transport"
	"github.com/zrepl-ha/zrepl-ha/zfsrepl"
)

// exposedNames gathers every metric name the registry can expose, with the
// histogram suffixes, by feeding one event of each kind.
func exposedNames(t *testing.T) map[string]bool {
	t.Helper()
	var stats transport.StreamStats
	stats.BytesIn.Store(1)
	m := New(Source{
		Node: func() failover.Status {
			return failover.Status{Role: "active", Paths: []failover.PathStatus{{Path: "link", LastAck: time.Now()}},
				Tiebreaker: &failover.ArbiterState{}, Witness: &failover.ArbiterState{}}
		},
		Roots: func() []zfsrepl.RootStatus {
			return []zfsrepl.RootStatus{{Root: zfsrepl.Root{Source: "tank"}, Lag: time.Second, LastCycle: time.Now()}}
		},
		Compression: &stats,
	}, time.Second)
	m.Heartbeat(failover.PathLink, time.Millisecond)
	m.Heartbeat(failover.PathLink, -3*time.Second) // sent "later": a gap of 3 intervals
	m.Decision(failover.Decision{From: failover.Passive, To: failover.Promoting})
	m.Decision(failover.Decision{From: failover.Active, To: failover.Fenced})
	m.Decision(failover.Decision{From: failover.Active, To: failover.Demoting})
	m.Step("plan tank", time.Second, os.ErrClosed)
	m.Action(failover.Action{Kind: failover.ActServe}, time.Second, nil)
	m.received.WithLabelValues("tank").Add(1)
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
		if mf.GetType().String() == "HISTOGRAM" {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				names[mf.GetName()+s] = true
			}
		}
	}
	if !names["zrepl_ha_heartbeats_missed_total"] || !names["zrepl_ha_witness_lease_held"] {
		t.Fatalf("the feed did not produce every series: %v", names)
	}
	return names
}

var metricRE = regexp.MustCompile(`\bzrepl_ha_[a-z_]+`)

// checkNames fails for every zrepl_ha_ metric an example uses that the
// daemon does not expose: a renamed metric would otherwise leave an alert
// that can never fire.
func checkNames(t *testing.T, file, text string, names map[string]bool) {
	t.Helper()
	used := metricRE.FindAllString(text, -1)
	if len(used) == 0 {
		t.Fatalf("%s uses no zrepl_ha_ metric", file)
	}
	for _, n := range used {
		if !names[n] {
			t.Errorf("%s uses %s, which the daemon does not expose", file, n)
		}
	}
}

func TestAlertRulesExample(t *testing.T) {
	const file = "../../docs/examples/alerts.yml"
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Expr        string            `yaml:"expr"`
				For         string            `yaml:"for"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("%s does not parse as Prometheus rules: %v", file, err)
	}
	exprs := map[string]string{}
	for _, g := range doc.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" || r.Expr == "" || r.Annotations["summary"] == "" || r.Labels["severity"] == "" {
				t.Errorf("rule %+v lacks alert, expr, severity or summary", r)
			}
			if r.For != "" {
				if _, err := time.ParseDuration(r.For); err != nil {
					t.Errorf("rule %s: for %q: %v", r.Alert, r.For, err)
				}
			}
			exprs[r.Alert] = r.Expr
		}
	}
	// The alerts the issue asks for, by what they must look at.
	for alert, metric := range map[string]string{
		"ZreplHAReplicationLagHigh": "zrepl_ha_replication_lag_seconds",
		"ZreplHAPathDown":           "zrepl_ha_path_up",
		"ZreplHAFenced":             `zrepl_ha_role{role="fenced"}`,
		"ZreplHANoTiebreaker":       "zrepl_ha_tiebreaker_up",
		"ZreplHAMetricsAbsent":      "absent(zrepl_ha_epoch",
	} {
		if !strings.Contains(exprs[alert], metric) {
			t.Errorf("alert %s missing or not on %s: %q", alert, metric, exprs[alert])
		}
	}
	checkNames(t, file, string(data), exposedNames(t))
}

func TestGrafanaDashboardExample(t *testing.T) {
	const file = "../../docs/examples/grafana-dashboard.json"
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("%s does not parse: %v", file, err)
	}
	if dash.Title == "" || len(dash.Panels) < 4 {
		t.Fatalf("dashboard has no title or too few panels: %+v", dash)
	}
	var all strings.Builder
	for _, p := range dash.Panels {
		if p.Title == "" || p.Type == "" || len(p.Targets) == 0 {
			t.Errorf("panel %+v lacks a title, a type or a query", p)
		}
		for _, tg := range p.Targets {
			all.WriteString(tg.Expr + "\n")
		}
	}
	for _, want := range []string{"zrepl_ha_role", "zrepl_ha_epoch", "zrepl_ha_replication_lag_seconds",
		"zrepl_ha_heartbeat_rtt_seconds_bucket", "zrepl_ha_promotions_total"} {
		if !strings.Contains(all.String(), want) {
			t.Errorf("dashboard has no panel on %s", want)
		}
	}
	checkNames(t, file, all.String(), exposedNames(t))
}
