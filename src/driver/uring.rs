pub(crate) struct Uring;
impl Uring {
    pub(crate) fn new(
        _w: std::sync::Arc<super::waker::Waker>,
        _c: std::sync::Arc<super::Counters>,
    ) -> std::io::Result<super::poll::PollIo> {
        Err(std::io::Error::other("todo"))
    }
}
