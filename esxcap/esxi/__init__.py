"""Pure ESXi knowledge: what hosts print (models, parsers, layouts), what pktcap-uw accepts on each version
(capabilities, the argv builder and its validation), the capture wrapper's text, and the one function that
quotes argv for the host's shell. No I/O, no event loop."""
