// A relay's receiving half, for the side-by-side ingest benchmark only (not
// part of the product): Go net/http decodes the Alertmanager webhook into the
// structs Alertmanager's template.Data has (what calert or prometheus-msteams
// do before rendering and sending), answers 200 and drops it. Nothing is stored.
//
//	go run . 127.0.0.1:9097
package main

import (
	"encoding/json"
	"log"
	"net/http"
	"os"
	"time"
)

type KV map[string]string

type Alert struct {
	Status       string    `json:"status"`
	Labels       KV        `json:"labels"`
	Annotations  KV        `json:"annotations"`
	StartsAt     time.Time `json:"startsAt"`
	EndsAt       time.Time `json:"endsAt"`
	GeneratorURL string    `json:"generatorURL"`
	Fingerprint  string    `json:"fingerprint"`
}

type Data struct {
	Version           string  `json:"version"`
	GroupKey          string  `json:"groupKey"`
	TruncatedAlerts   uint64  `json:"truncatedAlerts"`
	Receiver          string  `json:"receiver"`
	Status            string  `json:"status"`
	Alerts            []Alert `json:"alerts"`
	GroupLabels       KV      `json:"groupLabels"`
	CommonLabels      KV      `json:"commonLabels"`
	CommonAnnotations KV      `json:"commonAnnotations"`
	ExternalURL       string  `json:"externalURL"`
}

type answer struct {
	ID        int  `json:"id"`
	Alerts    int  `json:"alerts"`
	Duplicate bool `json:"duplicate"`
}

func receive(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	var d Data
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	if err := dec.Decode(&d); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if d.Version != "4" || len(d.Alerts) == 0 {
		http.Error(w, "not an Alertmanager v4 notification", http.StatusUnprocessableEntity)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(answer{ID: 0, Alerts: len(d.Alerts), Duplicate: false})
}

func main() {
	addr := "127.0.0.1:9097"
	if len(os.Args) > 1 {
		addr = os.Args[1]
	}
	http.HandleFunc("/api/v1/alerts", receive)
	log.Printf("go receiver listening on %s", addr)
	log.Fatal(http.ListenAndServe(addr, nil))
}
