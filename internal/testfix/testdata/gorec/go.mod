module example.com/gorec

go 1.22
