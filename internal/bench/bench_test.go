package bench

import (
	"os"
	"reflect"
	"testing"
)

func TestDefaults(t *testing.T) {
	o, err := Options{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	exe, _ := os.Executable()
	if o.AmberPath != exe || o.Rounds != 3 || o.Out == nil || o.PlotPath != "" || o.WorkDir != "" {
		t.Errorf("defaults = %+v", o)
	}
	if want := []int{64, 128, 256, 512, 1024}; !reflect.DeepEqual(o.Sizes, want) {
		t.Errorf("default sizes %v, want %v", o.Sizes, want)
	}
	o, err = Options{AmberPath: "/x/amber", Rounds: 5, Sizes: []int{8}}.withDefaults()
	if err != nil || o.AmberPath != "/x/amber" || o.Rounds != 5 || !reflect.DeepEqual(o.Sizes, []int{8}) {
		t.Errorf("explicit options changed: %+v, %v", o, err)
	}
	if _, err := (Options{Sizes: []int{64, 0}}).withDefaults(); err == nil {
		t.Error("a zero plot size was accepted")
	}
}
