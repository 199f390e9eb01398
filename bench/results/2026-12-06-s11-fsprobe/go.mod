module fsprobe

go 1.26.0
