// Command shop is the Go one of the suite's shops: net/http and
// encoding/json as a Go service writes them.
package main

import (
	"crypto/rand"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

type item struct {
	ID        int       `json:"id"`
	Name      string    `json:"name"`
	Price     float64   `json:"price"`
	Tags      []string  `json:"tags"`
	CreatedAt time.Time `json:"createdAt"`
}

var (
	variantB = os.Getenv("VARIANT") == "B"
	started  = time.Now()
	served   atomic.Int64
	orders   atomic.Int64
	created  = time.Date(2025, 3, 14, 9, 26, 53, 589793000, time.UTC)
	names    = []string{"kettle", "teapot", "mug", "spoon"}
	prices   = []float64{19.5, 20, 7.25, 3}
)

// tags come from a map, as a Go service keeps a set: its order varies.
func tags(id int) []string {
	set := map[string]bool{"kitchen": true, "sale": id%2 == 0, "new": true, "t" + strconv.Itoa(id): true}
	var out []string
	for t, on := range set {
		if on {
			out = append(out, t)
		}
	}
	return out
}

func getItem(id int, planted bool) item {
	p := prices[id]
	if planted {
		p += 1 // planted: a price change
	}
	return item{ID: id, Name: names[id], Price: p, Tags: tags(id), CreatedAt: created.Add(time.Duration(id) * time.Hour)}
}

func uuid() string {
	var b [16]byte
	rand.Read(b[:])
	b[6], b[8] = b[6]&0x0f|0x40, b[8]&0x3f|0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func main() {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/items", func(w http.ResponseWriter, r *http.Request) {
		cc := "max-age=60"
		if variantB {
			cc = "no-store" // planted: a header
		}
		w.Header().Set("Cache-Control", cc)
		var list []item
		for id := range names {
			list = append(list, getItem(id, false))
		}
		writeJSON(w, 200, map[string]any{"generatedAt": time.Now(), "requestId": uuid(), "items": list})
	})
	mux.HandleFunc("GET /api/items/{id}", func(w http.ResponseWriter, r *http.Request) {
		id, err := strconv.Atoi(r.PathValue("id"))
		switch {
		case err != nil || id < 0 || id >= len(names):
			writeJSON(w, 404, map[string]string{"error": "no such item"})
		case variantB && id == 3:
			writeJSON(w, 500, map[string]string{"error": "internal"}) // planted: a status
		default:
			writeJSON(w, 200, map[string]any{"item": getItem(id, variantB), "viewedAt": time.Now()})
		}
	})
	mux.HandleFunc("GET /api/ranking", func(w http.ResponseWriter, r *http.Request) {
		ranking := []string{"mug", "kettle", "spoon", "teapot"}
		if variantB {
			ranking = []string{"teapot", "spoon", "kettle", "mug"} // planted: an ordered list reversed
		}
		writeJSON(w, 200, map[string]any{"ranking": ranking, "at": time.Now().Unix()})
	})
	mux.HandleFunc("GET /api/slow", func(w http.ResponseWriter, r *http.Request) {
		d := 20 * time.Millisecond
		if variantB {
			d *= 3 // planted: latency
		}
		time.Sleep(d)
		writeJSON(w, 200, map[string]any{"ok": true, "at": time.Now()})
	})
	mux.HandleFunc("GET /api/status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Request-Id", uuid())
		writeJSON(w, 200, map[string]any{"status": "ok", "served": served.Add(1), "uptime": time.Since(started).Seconds(),
			"now": time.Now().UnixMilli()})
	})
	mux.HandleFunc("POST /api/orders", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Item int `json:"item"`
			Qty  int `json:"qty"`
		}
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil || in.Item < 0 || in.Item >= len(names) {
			writeJSON(w, 400, map[string]string{"error": "bad order"})
			return
		}
		w.Header().Set("Location", "/api/orders/"+strconv.FormatInt(orders.Load()+1, 10))
		writeJSON(w, 201, map[string]any{"id": uuid(), "number": orders.Add(1), "createdAt": time.Now(),
			"total": float64(in.Qty) * prices[in.Item]})
	})
	mux.HandleFunc("GET /api/report.csv", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/csv")
		cw := csv.NewWriter(w)
		cw.Write([]string{"id", "name", "generated_at"})
		for id, n := range names {
			cw.Write([]string{strconv.Itoa(id), n, time.Now().Format(time.RFC3339Nano)})
		}
		cw.Flush()
	})
	mux.HandleFunc("GET /api/health.txt", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "# generated_at=%s\nstatus ok\nitems %d\n", time.Now().Format(time.RFC3339Nano), len(names))
	})
	log.Fatal(http.ListenAndServe(strings.TrimSpace(os.Getenv("ADDR")), mux))
}
