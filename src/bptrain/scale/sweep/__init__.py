"""`bptrain sweep`: a spec (`spec`), a study on a journal or database (`storage`), trials run in
worker processes (`worker`), and the coordinator that hands them out (`coordinator`)."""
