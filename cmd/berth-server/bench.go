package main

import "fmt"

func runBench(args []string) error { return fmt.Errorf("bench: not built yet") }
