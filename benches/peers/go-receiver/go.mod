module go-receiver

go 1.19
