package main

import (
	"context"
	"errors"
	"io"

	"github.com/devopstic/devopstic/pkg/config"
)

func importGitHub(ctx context.Context, cfg config.AllInOne, args []string, stdout, stderr io.Writer) error {
	return errors.New("import github is not built yet")
}
