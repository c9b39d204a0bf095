// Package pageserver speaks CRIU 4.2's page server protocol, in both
// directions: a dump sends a process's pages over TCP (Client) instead of
// writing the pagemap and pages images itself, and a page server (Serve)
// receives them and writes those images into its own directory, as the
// dump would have written them locally.
//
// The protocol is a stream of fixed 32-byte requests (Request), each
// naming a command, a page count, an address and a destination (the
// pagemap of a process or of a shared memory object), some followed by
// page contents. Only a few commands are answered: opening a destination
// (whether the server has parent images for it), asking for the parent,
// and the close that ends a session (an int32 status, after which the
// server has every page on disk). A dump --lazy-pages serves the other
// direction (ServeLazy): a lazy-pages daemon asks it for pages with GET
// (Source). Everything is in the host's byte order,
// as CRIU sends it: little endian on x86-64, the only architecture amber
// supports.
package pageserver
